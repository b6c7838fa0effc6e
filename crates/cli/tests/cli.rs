//! Drives the `skein` binary. Against a real broker these run with the broker's end-to-end
//! tests; here they run against `FakeBroker`, the client crate's in-process test double of the
//! broker's gRPC API, so the CLI's behaviour is checked without `skein-node`.

#[path = "../../client/tests/support/fake_broker.rs"]
mod fake_broker;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fake_broker::FakeCluster;

/// Runs `skein --brokers BROKERS ARGS..` with `stdin`, off the async runtime.
async fn skein(brokers: &str, args: &[&str], stdin: &str) -> Output {
    let brokers = brokers.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skein"))
            .arg("--brokers")
            .arg(&brokers)
            .args(&args)
            .env_remove("SKEIN_BROKERS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn skein");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("skein runs")
    })
    .await
    .expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_with_what_to_do() {
    let o = skein("127.0.0.1:1", &["topic", "list"], "").await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("cannot reach any broker at 127.0.0.1:1"), "{e}");
    assert!(e.contains("cargo run --release --bin skein-node"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_rejected_before_any_network_call() {
    let o = skein("127.0.0.1:1", &["consume", "t", "--offset", "3"], "").await;
    assert_eq!(o.status.code(), Some(2), "clap usage error");
    assert!(stderr(&o).contains("--partition"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_produce_and_consume_through_the_binary() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;

    let o = skein(
        &addr,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1000",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("created topic orders with 3 partitions"),
        "{}",
        stdout(&o)
    );

    let o = skein(&addr, &["topic", "list", "--output", "json"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let topics: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(topics[0]["name"], "orders");
    assert_eq!(topics[0]["partitions"].as_array().map(Vec::len), Some(3));

    let o = skein(&addr, &["topic", "describe", "orders"], "").await;
    assert!(
        stdout(&o).contains("Config: retention.ms=1000"),
        "{}",
        stdout(&o)
    );

    let input = "alice:1\nbob:2\nalice:3\ncarol:4\n";
    let o = skein(
        &addr,
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--compression",
            "lz4",
        ],
        input,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4 records acknowledged"),
        "{}",
        stderr(&o)
    );

    let o = skein(
        &addr,
        &["produce", "orders", "--key", "dave", "--value", "5"],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    let o = skein(
        &addr,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "5",
            "--idle-timeout",
            "5s",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut values: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    values.sort();
    assert_eq!(values, vec!["1", "2", "3", "4", "5"]);

    // Per key, order is kept: alice's records are in one partition, 1 before 3.
    let o = skein(
        &addr,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--idle-timeout",
            "300ms",
            "--output",
            "json",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let records: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 5);
    let alice: Vec<&serde_json::Value> = records.iter().filter(|r| r["key"] == "alice").collect();
    assert_eq!(alice.len(), 2);
    assert_eq!(alice[0]["partition"], alice[1]["partition"]);
    assert_eq!(alice[0]["value"], "1");
    assert_eq!(alice[1]["value"], "3");

    // Default start is the end: nothing old is printed.
    let o = skein(&addr, &["consume", "orders", "--idle-timeout", "200ms"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let p = alice[0]["partition"].as_u64().expect("number").to_string();
    let o = skein(
        &addr,
        &[
            "consume",
            "orders",
            "--partition",
            &p,
            "--offset",
            "1",
            "--idle-timeout",
            "200ms",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().any(|l| l == "3"), "{}", stdout(&o));
    assert!(
        !stdout(&o).lines().any(|l| l == "1"),
        "offset 0 skipped: {}",
        stdout(&o)
    );

    let o = skein(&addr, &["consume", "orders", "--partition", "9"], "").await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has 3 partitions"), "{}", stderr(&o));

    let o = skein(&addr, &["cluster", "status"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("controller"), "{}", stdout(&o));
    assert!(stdout(&o).contains("orders"), "{}", stdout(&o));

    let o = skein(&addr, &["topic", "delete", "orders"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = skein(&addr, &["produce", "orders", "--value", "x"], "").await;
    assert!(!o.status.success(), "producing to a deleted topic fails");
    assert!(stderr(&o).contains("skein topic create"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_exits_non_zero_when_a_line_lacks_the_separator() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    let o = skein(
        &addr,
        &["produce", "t", "--key-separator", ":"],
        "a:1\nnokey\nb:2\n",
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("line 2 has no key separator"), "{e}");
    assert!(e.contains("1 records acknowledged"), "{e}");
    assert_eq!(cluster.values("t", 0).len(), 1);
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("json ({e}): {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_story_with_group_verbs() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    let o = skein(&addr, &["produce", "t"], "a\nb\nc\nd\ne\n").await;
    assert!(o.status.success(), "{}", stderr(&o));

    // Consume three with a group: printed and committed.
    let o = skein(
        &addr,
        &[
            "consume",
            "t",
            "--group",
            "g",
            "--from-beginning",
            "--max-messages",
            "3",
            "--idle-timeout",
            "5s",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a\nb\nc\n");
    assert_eq!(
        cluster.committed("g", "t", 0),
        Some(3),
        "commits what it printed"
    );
    assert!(cluster.members("g").is_empty(), "left the group on exit");

    // Lag is visible.
    let o = skein(&addr, &["group", "describe", "g", "--output", "json"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let d = json(&o);
    assert_eq!(d["partitions"][0]["committed_offset"], 3);
    assert_eq!(d["partitions"][0]["lag"], 2);
    let o = skein(&addr, &["group", "describe", "g"], "").await;
    assert!(stdout(&o).contains("COMMITTED  END  LAG"), "{}", stdout(&o));
    let o = skein(&addr, &["group", "list"], "").await;
    assert!(stdout(&o).contains("g      Empty"), "{}", stdout(&o));

    // The rest, from the commit.
    let o = skein(
        &addr,
        &["consume", "t", "--group", "g", "--idle-timeout", "500ms"],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "d\ne\n");
    assert_eq!(cluster.committed("g", "t", 0), Some(5));

    // Reset: a dry run changes nothing, --execute does.
    let o = skein(
        &addr,
        &["group", "reset", "g", "--topic", "t", "--to-earliest"],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("5        ->  0"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("Dry run: nothing changed"),
        "{}",
        stdout(&o)
    );
    assert_eq!(cluster.committed("g", "t", 0), Some(5));
    let o = skein(
        &addr,
        &[
            "group",
            "reset",
            "g",
            "--topic",
            "t:0",
            "--shift-by",
            "-2",
            "--execute",
            "--output",
            "json",
        ],
        "",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = json(&o);
    assert_eq!(plan["executed"], true);
    assert_eq!(plan["partitions"][0]["new_offset"], 3);
    assert_eq!(cluster.committed("g", "t", 0), Some(3));
    let o = skein(
        &addr,
        &["consume", "t", "--group", "g", "--idle-timeout", "500ms"],
        "",
    )
    .await;
    assert_eq!(stdout(&o), "d\ne\n", "replayed");

    // Refused while a member is active, with what to do.
    let client = skein_client::Client::new(skein_client::ClientConfig::new(&addr)).expect("client");
    let mut config = skein_client::GroupConsumerConfig::new("g");
    config.session_timeout = std::time::Duration::from_secs(2);
    let mut member = skein_client::GroupConsumer::new(client, config).expect("consumer");
    member.subscribe(["t"]);
    loop {
        if let skein_client::GroupEvent::Assigned(_) = member.poll_event().await.expect("poll") {
            break;
        }
    }
    let o = skein(
        &addr,
        &[
            "group",
            "reset",
            "g",
            "--topic",
            "t",
            "--to-latest",
            "--execute",
        ],
        "",
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("group g: it has 1 active members; stop them first"),
        "{e}"
    );
    assert!(e.contains("skein group describe g"), "{e}");
    let o = skein(&addr, &["group", "delete", "g"], "").await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("stop them first"), "{}", stderr(&o));
    member.close().await.expect("close");

    let o = skein(&addr, &["group", "delete", "g"], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = skein(&addr, &["group", "describe", "g"], "").await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("skein group list"), "{}", stderr(&o));
}
