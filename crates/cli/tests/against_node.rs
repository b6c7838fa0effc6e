//! The `skein` binary against a real single-node `skein-node` (in this test process, on
//! 127.0.0.1:0): the quickstart as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use skein_node::config::NodeConfig;
use skein_node::Listeners;

struct Node {
    brokers: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Node {
    fn start() -> Node {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let brokers = rt.block_on(async move {
            let l = Listeners::bind_ephemeral().await.expect("bind");
            let (client, peer, http) = l.addrs().expect("addrs");
            let kafka = l.kafka_addr().expect("kafka addr");
            let config = NodeConfig {
                kafka_addr: kafka,
                advertised_kafka_addr: kafka.to_string(),
                data_dir: data,
                client_addr: client,
                peer_addr: peer,
                http_addr: http,
                advertised_client_addr: client.to_string(),
                peers: [(1, peer.to_string())].into_iter().collect(),
                ..NodeConfig::default()
            };
            tokio::spawn(skein_node::run(l, config, async move {
                let _ = rx.await;
            }));
            // Ready when the HTTP endpoint says so.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let ok = tokio::net::TcpStream::connect(http).await.is_ok() && {
                    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
                        .args([
                            "--brokers",
                            &client.to_string(),
                            "cluster",
                            "status",
                            "--output",
                            "json",
                        ])
                        .output()
                        .expect("run skein");
                    out.status.success()
                        && String::from_utf8_lossy(&out.stdout).contains("\"ready\":true")
                };
                if ok {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node did not become ready"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client.to_string()
        });
        Node {
            brokers,
            stop: Some(tx),
            _dir: dir,
            rt,
        }
    }

    fn skein(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skein"));
        cmd.arg("--brokers").arg(&self.brokers).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn skein");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("skein output")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Give the node a moment to stop before the runtime (and its tasks) is dropped.
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn quickstart_topic_produce_consume() {
    let node = Node::start();
    let o = node.skein(&["topic", "create", "orders", "--partitions", "3"], None);
    assert!(o.status.success(), "{}", text(&o));

    let o = node.skein(&["topic", "list"], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("orders"),
        "{}",
        text(&o)
    );
    let o = node.skein(&["topic", "describe", "orders", "--output", "json"], None);
    assert!(o.status.success(), "{}", text(&o));
    let json = String::from_utf8_lossy(&o.stdout);
    assert!(json.contains("\"partitions\""), "{json}");

    let input: String = (0..300).map(|i| format!("order-{i}\n")).collect();
    let o = node.skein(&["produce", "orders"], Some(&input));
    assert!(o.status.success(), "{}", text(&o));
    let o = node.skein(
        &["produce", "orders", "--key", "k1", "--value", "single"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));

    let o = node.skein(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "301",
            "--idle-timeout",
            "5s",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 301, "{}", text(&o));
    lines.sort_unstable();
    assert!(lines.contains(&"single"));
    assert!(lines.contains(&"order-299"));

    // Each partition read from offset 0 as JSON: together they hold every record.
    let mut total = 0;
    for p in ["0", "1", "2"] {
        let o = node.skein(
            &[
                "consume",
                "orders",
                "--partition",
                p,
                "--offset",
                "0",
                "--idle-timeout",
                "1s",
                "--output",
                "json",
            ],
            None,
        );
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            out.lines().all(|l| l.contains("\"offset\"")),
            "{}",
            text(&o)
        );
        total += out.lines().count();
    }
    assert_eq!(total, 301);

    let o = node.skein(&["cluster", "status"], None);
    assert!(o.status.success(), "{}", text(&o));

    let o = node.skein(&["topic", "delete", "orders"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = node.skein(&["topic", "describe", "orders"], None);
    assert!(
        !o.status.success(),
        "describing a deleted topic fails: {}",
        text(&o)
    );
}

#[test]
fn errors_say_what_to_do() {
    let node = Node::start();
    let o = node.skein(&["topic", "create", "bad/name"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not allowed") || err.contains("invalid topic name"),
        "{}",
        text(&o)
    );

    let o = node.skein(&["produce", "missing-topic", "--value", "x"], None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("skein topic create"),
        "{}",
        text(&o)
    );

    let o = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["--brokers", "127.0.0.1:1", "topic", "list"])
        .output()
        .expect("run skein");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("skein-node"),
        "{}",
        text(&o)
    );
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_group_skips_nothing_written_to_partitions_that_were_empty_while_it_ran() {
    let node = Node::start();
    let o = node.skein(&["topic", "create", "four", "--partitions", "4"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = node.skein(&["produce", "four", "--partition", "0"], Some("a\nb\n"));
    assert!(o.status.success(), "{}", text(&o));

    // Only partition 0 has records while the group first runs.
    let first = [
        "consume",
        "four",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "2",
        "--idle-timeout",
        "20s",
    ];
    let o = node.skein(&first, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(lines(&o), vec!["a", "b"], "{}", text(&o));

    // Then every partition gets a record; the same group, without --from-beginning, reads
    // every one of them (positions were committed also for the partitions that were empty).
    for p in ["0", "1", "2", "3"] {
        let value = format!("new-{p}");
        let o = node.skein(
            &["produce", "four", "--partition", p, "--value", &value],
            None,
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let second = [
        "consume",
        "four",
        "--group",
        "g",
        "--max-messages",
        "4",
        "--idle-timeout",
        "20s",
    ];
    let o = node.skein(&second, None);
    assert!(o.status.success(), "{}", text(&o));
    let mut got = lines(&o);
    got.sort();
    assert_eq!(
        got,
        vec!["new-0", "new-1", "new-2", "new-3"],
        "{}",
        text(&o)
    );

    let o = node.skein(&["group", "describe", "g", "--output", "json"], None);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn out_of_range_offsets_reset_none_and_empty_groups_are_explained() {
    let node = Node::start();
    let o = node.skein(&["topic", "create", "short", "--partitions", "1"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = node.skein(&["produce", "short"], Some("x\ny\nz\n"));
    assert!(o.status.success(), "{}", text(&o));

    // An explicit offset past the end is an error naming both bounds, not "0 records".
    let o = node.skein(
        &["consume", "short", "--partition", "0", "--offset", "999999"],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("999999") && err.contains("from 0") && err.contains("to 3"),
        "{}",
        text(&o)
    );
    // The end itself is a valid start (nothing to print yet).
    let o = node.skein(
        &[
            "consume",
            "short",
            "--partition",
            "0",
            "--offset",
            "3",
            "--idle-timeout",
            "200ms",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));

    // --reset none: a partition without a commit is an error saying what to do.
    let o = node.skein(
        &[
            "consume",
            "short",
            "--group",
            "quiet",
            "--reset",
            "none",
            "--idle-timeout",
            "5s",
        ],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("reset policy is none") && err.contains("skein group reset"),
        "{}",
        text(&o)
    );

    // The group joined and left without a commit: listed as Empty, and describable.
    let o = node.skein(&["group", "list"], None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("quiet"),
        "{}",
        text(&o)
    );
    let o = node.skein(&["group", "describe", "quiet"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("state: Empty"),
        "{}",
        text(&o)
    );
    let o = node.skein(&["group", "describe", "never-seen"], None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{}",
        text(&o)
    );
}
