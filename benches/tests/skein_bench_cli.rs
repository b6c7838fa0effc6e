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
