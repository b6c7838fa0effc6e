//! `skein-bench` end to end: a local one-node cluster of real `skein-node` processes, 20 000
//! records produced through `skein-client`, one JSON report on stdout.

use std::path::PathBuf;
use std::process::Command;

/// The `skein-node` binary built beside `skein-bench`, or `None` (after saying why) when it is
/// missing outside CI. Under CI a missing binary fails the test.
fn node_bin() -> Option<PathBuf> {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_skein-bench"));
    let bin = bench
        .parent()
        .expect("skein-bench lives in a target directory")
        .join("skein-node");
    if bin.is_file() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: under CI the workspace build must include it \
             (`cargo test --workspace` builds it; or `cargo build --bin skein-node`)",
            bin.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is missing; build it with `cargo build --bin skein-node` \
         (`cargo test --workspace` does) to run this test",
        bin.display()
    );
    None
}

#[test]
fn cluster_of_one_node_produces_20000_records_and_reports_json() {
    let Some(node) = node_bin() else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir for the cluster's data");
    let out = Command::new(env!("CARGO_BIN_EXE_skein-bench"))
        .arg("cluster")
        .arg("--nodes")
        .arg("1")
        .arg("--node-bin")
        .arg(&node)
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--",
            "produce",
            "--records",
            "20000",
            "--producers",
            "2",
            "--output",
            "json",
        ])
        .env_remove("SKEIN_BROKERS")
        .output()
        .expect("run skein-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "skein-bench failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(v["scenario"], "produce", "{v}");
    assert_eq!(v["records"].as_u64(), Some(20_000), "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(20_000 * 100), "{v}");
    assert!(
        v["records_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{v}"
    );
    assert!(v["mb_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    let lat = &v["latency_ms"];
    let p = |k: &str| {
        lat[k]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{k} missing: {v}"))
    };
    assert!(
        p("p50") > 0.0 && p("p50") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max")
    );
    assert_eq!(lat["count"].as_u64(), Some(20_000), "{v}");
    assert_eq!(v["cluster"]["nodes"].as_u64(), Some(1), "{v}");
    assert!(
        v["cluster"]["node_rss_peak_mib"][0]
            .as_f64()
            .is_some_and(|m| m > 0.0),
        "{v}"
    );
    assert!(
        v["cluster"]["node_rss_anon_peak_mib"][0]
            .as_f64()
            .is_some_and(|m| m > 0.0),
        "{v}"
    );
    assert!(
        v["cluster"]["node_cpu_secs"][0]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{v}"
    );
    assert!(v["bench_cpu_secs"].as_f64().is_some_and(|s| s > 0.0), "{v}");
    // The cluster's data directory is removed after the run.
    let left: Vec<_> = std::fs::read_dir(data.path())
        .expect("read the data directory")
        .collect();
    assert!(left.is_empty(), "data left behind: {left:?}");
}

#[test]
fn a_missing_node_binary_is_reported_with_the_build_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_skein-bench"))
        .args([
            "cluster",
            "--node-bin",
            "/nonexistent/skein-node",
            "--",
            "produce",
        ])
        .output()
        .expect("run skein-bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/skein-node"), "{stderr}");
}

/// Every phase of `partitions` on a small cluster: 3 nodes, 30 RF 3 partitions in 3 topics,
/// a SIGKILL and a restart. Checks the report's shape and that each phase happened, not speed.
#[test]
fn partitions_on_three_nodes_reports_leaders_idle_cost_failover_and_restart() {
    let Some(node) = node_bin() else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir for the cluster's data");
    let out = Command::new(env!("CARGO_BIN_EXE_skein-bench"))
        .arg("partitions")
        .arg("--node-bin")
        .arg(&node)
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--nodes",
            "3",
            "--partitions",
            "30",
            "--topics",
            "3",
            "--settle",
            "0s",
            "--idle-window",
            "1s",
            "--spread-wait",
            "0s",
            "--phase-timeout",
            "60s",
            "--output",
            "json",
        ])
        .output()
        .expect("run skein-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "skein-bench failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(v["scenario"], "partitions", "{v}");
    assert!(v["error"].is_null(), "{v}");
    assert_eq!(v["create"]["topics_created"], 3, "{v}");
    assert_eq!(v["create"]["partitions_created"], 30, "{v}");
    assert_eq!(v["leaders"]["led"], 30, "{v}");
    assert!(v["leaders"]["secs_after_create"].is_number(), "{v}");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    for n in nodes {
        assert!(n["rss_mib"].as_f64().is_some_and(|m| m > 0.0), "{v}");
        assert!(n["open_fds"].as_u64().is_some_and(|f| f > 0), "{v}");
        assert!(
            n["disk"]["allocated_bytes"].as_u64().is_some_and(|b| b > 0),
            "{v}"
        );
    }
    assert_eq!(
        v["idle"]["node_cpu_percent"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );
    // The killed node is never node 1, which the client bootstraps from.
    let killed = v["failover"]["killed_node_id"]
        .as_u64()
        .expect("failover ran");
    assert!(killed == 2 || killed == 3, "{v}");
    assert!(v["failover"]["secs"].is_number(), "{v}");
    assert_eq!(v["failover"]["unmoved_at_end"], 0, "{v}");
    assert_eq!(v["restart"]["node_id"].as_u64(), Some(killed), "{v}");
    assert!(v["restart"]["ready_secs"].is_number(), "{v}");
    assert_eq!(v["targets"].as_array().map(Vec::len), Some(5), "{v}");
    let left: Vec<_> = std::fs::read_dir(data.path())
        .expect("read the data directory")
        .collect();
    assert!(left.is_empty(), "data left behind: {left:?}");
}
