//! The sending-to-many bench's small run on every store: it stores and
//! delivers every notification one by one and in batches (the binary
//! checks that none is lost). Figures are printed, never asserted on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn every_store_delivers_every_batched_notification() {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-many"))
        .arg("--quick")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "notify-many failed:\n{stdout}\n{stderr}"
    );
    for store in ["memory", "sqlite", "postgres", "redis"] {
        assert!(
            stdout.contains(&format!("| {store} |")),
            "{store} missing:\n{stdout}"
        );
    }
}
