//! `tls-memory`'s small run: 300 idle streams plain, over TLS on HTTP/1.1
//! and on HTTP/2, every one answered 200 (the tool asserts it). The figures
//! are printed, never asserted on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn idle_streams_open_over_plain_http_tls_http1_and_tls_http2() {
    let output = Command::new(env!("CARGO_BIN_EXE_tls-memory"))
        .arg("--quick")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    for way in ["plain h1", "tls h1", "tls h2"] {
        assert!(stdout.contains(way), "{way} missing:\n{stdout}");
    }
    println!("{stdout}");
}
