//! The load generator's small run, end to end: every server mode starts,
//! holds its connections, delivers every targeted and broadcast event and
//! is compared with ours. Figures are printed, never asserted on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn quick_run_measures_every_mode_and_loses_nothing() {
    let out = std::env::temp_dir().join(format!("sse-loadgen-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed:\n{stderr}");
    for mode in ["ours", "broadcast", "map", "raw", "nchan"] {
        assert!(
            stderr.contains(&format!(
                "{mode}: fan-out at 300 connections, 6000/6000 deliveries"
            )),
            "{mode} lost broadcast deliveries:\n{stderr}"
        );
        assert!(
            stdout.contains(&format!("| {mode} | 300 |")),
            "{mode} missing from the summary:\n{stdout}"
        );
    }
    assert!(
        stderr.contains("ours: replayed 400/400 events"),
        "replay lost events:\n{stderr}"
    );
    for baseline in ["broadcast", "map", "raw", "nchan"] {
        assert!(stdout.contains(&format!("| vs {baseline} |")), "{stdout}");
    }
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 5);
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(json.contains(r#""replay_per_second":null"#) && json.contains(r#""mode":"ours""#));
    let _ = std::fs::remove_dir_all(out);
}
