//! The fault harness's small run on every hub engine: brokers of the
//! run's own (killed, stopped, promoted, cut off, black-holed, their
//! backends terminated), a publish that fails on a quiet system, a logout
//! during an outage. After every fault, every tab must have every
//! acknowledged notification exactly once, in order, nothing of another
//! user's, and the logged-out user's tabs must have ended. Timings are
//! printed, never asserted on.
//!
//! Needs PostgreSQL (`DATABASE_URL`), `redis-server` and `nats-server` on
//! the path, and the example server built beside this test's binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_fault_on_every_engine_loses_duplicates_and_leaks_nothing() {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_many-nodes")).with_file_name("notifications");
    assert!(
        server.exists(),
        "{} is missing: run `cargo build -p examples --bin notifications`",
        server.display()
    );
    let out = std::env::temp_dir().join(format!("sse-faults-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_many-nodes"))
        .args(["--quick", "--faults", "--server"])
        .arg(&server)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the fault harness failed:\n{stderr}\n{stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    for r in results.as_array().unwrap() {
        let engine = r["engine"].as_str().unwrap();
        let faults = r["faults"].as_array().unwrap();
        assert!(faults.len() >= 6, "{engine}: {faults:?}");
        for f in faults {
            let fault = f["fault"].as_str().unwrap();
            for zero in [
                "lost",
                "duplicated",
                "out_of_order",
                "leaked",
                "revoked_streaming",
            ] {
                assert_eq!(
                    f[zero].as_u64(),
                    Some(0),
                    "{engine} {fault}: {zero} in {f}\n{stdout}"
                );
            }
            assert!(
                f["streams_back_ms"].is_u64(),
                "{engine} {fault}: not every stream came back"
            );
        }
        for zero in ["lost", "duplicated", "out_of_order", "leaked"] {
            assert_eq!(
                r[zero].as_u64(),
                Some(0),
                "{engine}: {zero} in the final count\n{stdout}"
            );
        }
        assert!(
            r["sent"].as_u64().unwrap() > 50,
            "{engine}: too little sent"
        );
    }
    println!("{stdout}");
}
