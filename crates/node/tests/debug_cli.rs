//! The offline inspector, driven as a user would: through the `skein-node` binary.

use std::process::Command;

use skein_record::BatchBuilder;
use skein_storage::{LogConfig, PartitionLog};

fn skein_node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skein-node"))
}

fn make_log(dir: &std::path::Path) {
    let config = LogConfig {
        segment_bytes_max: 8 * 1024,
        batch_bytes_max: 4 * 1024,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir, config).expect("open");
    for i in 0..40 {
        let mut b = BatchBuilder::new(i);
        for _ in 0..5 {
            b.push(i, None, Some(&[b'x'; 100]), &[]);
        }
        log.append(&b.finish()).expect("append");
    }
    log.flush().expect("flush");
}

#[test]
fn verify_passes_on_a_sound_log_and_fails_on_a_flipped_bit() {
    let data = tempfile::tempdir().expect("tempdir");
    let part = data.path().join("topics/orders/0");
    make_log(&part);

    let out = skein_node()
        .args(["debug", "verify"])
        .arg(data.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed: {text}");
    assert!(
        text.contains("1 partition logs checked, 0 damaged"),
        "{text}"
    );
    assert!(text.contains("200 records"), "{text}");

    let seg = part.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[100] ^= 0x01;
    std::fs::write(&seg, &bytes).expect("write");
    let out = skein_node()
        .args(["debug", "verify"])
        .arg(data.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("CRC mismatch in batch at position 0"),
        "{text}"
    );

    let out = skein_node()
        .args(["debug", "dump-segment"])
        .arg(&seg)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("BAD"), "{text}");
}

#[test]
fn dump_segment_lists_batches() {
    let data = tempfile::tempdir().expect("tempdir");
    make_log(data.path());
    let seg = data.path().join("00000000000000000000.log");
    let out = skein_node()
        .args(["debug", "dump-segment"])
        .arg(&seg)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("0 ") && l.contains("data")),
        "{text}"
    );
}

#[test]
fn missing_paths_give_a_clear_error() {
    let out = skein_node()
        .args(["debug", "verify", "/nonexistent/skein"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a directory"), "{err}");
}
