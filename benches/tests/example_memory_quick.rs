//! `example-memory`'s small run: the example server on its memory store
//! takes 600 logged-in streams and the tool reports their memory. The
//! figure is printed, never asserted on; that every stream opened (status
//! 200 and a first event) is.
//!
//! Needs the example server built beside this test's binaries, as
//! `cargo test --workspace` builds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_example_app_holds_every_stream_and_reports_its_memory() {
    let server =
        PathBuf::from(env!("CARGO_BIN_EXE_example-memory")).with_file_name("notifications");
    assert!(
        server.exists(),
        "{} is missing: run `cargo build -p examples --bin notifications` (cargo test --workspace builds it)",
        server.display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_example-memory"))
        .arg("--quick")
        .arg("--server")
        .arg(&server)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    println!("{stdout}");
    let row = stdout
        .lines()
        .find(|line| line.starts_with("| (defaults) | 600 | 200 |"))
        .unwrap_or_else(|| panic!("no result row:\n{stdout}"));
    assert!(row.ends_with("KiB) |"), "{row}");
}
