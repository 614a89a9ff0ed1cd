//! The conflation bench's small run over real HTTP: a slow reader of a
//! keyed 10 kHz progress stream keeps its stream, gets every value it
//! receives in order, and sees the final one (the binary asserts these).
//! Figures are printed, never asserted on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn a_slow_reader_of_a_keyed_stream_keeps_up_with_the_latest_value() {
    let output = Command::new(env!("CARGO_BIN_EXE_conflation"))
        .arg("--quick")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conflation failed:\n{stdout}\n{stderr}"
    );
    let keyed = stdout
        .lines()
        .find(|line| line.starts_with("| conflate("))
        .unwrap_or_else(|| panic!("no keyed row:\n{stdout}"));
    assert!(keyed.contains("| yes | open |"), "{keyed}");
}
