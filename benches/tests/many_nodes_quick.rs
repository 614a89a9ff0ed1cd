//! The many-node load test's small run, end to end, on every hub engine:
//! three example-server nodes on one hub and one PostgreSQL store, browser-
//! like clients, a rolling restart and a rolling SIGKILL while
//! notifications keep coming. Every tab must get every notification and
//! broadcast exactly once, in order, and nothing of another user's.
//! Timings are printed, never asserted on.
//!
//! Needs PostgreSQL, Redis and NATS (`DATABASE_URL`, `REDIS_URL`,
//! `NATS_URL`) and the example server built beside this test's binaries,
//! as `cargo test --workspace` builds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn notifications_server() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_many-nodes")).with_file_name("notifications");
    assert!(
        beside.exists(),
        "{} is missing: run `cargo build -p examples --bin notifications` (cargo test --workspace builds it)",
        beside.display()
    );
    beside
}

#[test]
fn rolling_restarts_and_kills_lose_and_duplicate_nothing_on_every_engine() {
    let out = std::env::temp_dir().join(format!("sse-many-nodes-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_many-nodes"))
        .arg("--quick")
        .arg("--server")
        .arg(notifications_server())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "many-nodes failed:\n{stderr}\n{stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let engines: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["engine"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["redis", "postgres", "nats"]);
    for r in results.as_array().unwrap() {
        let engine = r["engine"].as_str().unwrap();
        let count = |field: &str| r[field].as_u64().unwrap();
        assert_eq!(count("streams"), 180, "{engine}");
        // Sent while nodes restarted and died: notifications, plus the
        // broadcasts every one of the 180 tabs must have.
        assert!(count("sent") > 50, "{engine} sent only {}", count("sent"));
        assert!(count("expected") >= count("sent") * 3, "{engine}: {r}");
        for zero in [
            "lost",
            "duplicated",
            "out_of_order",
            "leaked",
            "unauthorized",
        ] {
            assert_eq!(count(zero), 0, "{engine}: {zero} in {r}\n{stderr}");
        }
        // A send whose answer never came may still have been stored and
        // delivered: the only deliveries nobody expected.
        // (each of the user's 3 tabs counts it).
        assert!(
            count("unexpected") <= 3 * count("send_ambiguous"),
            "{engine}: {r}"
        );
        assert_eq!(
            count("delivered"),
            count("expected") + count("unexpected"),
            "{engine}: {r}"
        );
        for phase in ["restart", "kill"] {
            let cycles = r[phase].as_array().unwrap();
            assert_eq!(cycles.len(), 3, "{engine} {phase}: every node cycles");
            for cycle in cycles {
                assert!(
                    cycle["back_ms"].is_u64(),
                    "{engine} {phase}: not every stream came back: {cycle}"
                );
            }
        }
        let latencies = r["targeted_us"].as_array().unwrap();
        assert!(latencies[0].as_u64().unwrap() > 0, "{engine}: no latency");
    }
    for engine in ["redis", "postgres", "nats"] {
        assert!(
            stdout.contains(&format!("| {engine} | 180 on 3 nodes |")),
            "{stdout}"
        );
    }
}
