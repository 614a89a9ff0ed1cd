//! Starts example binaries as a user would, on a free port.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sse_conformance::client::Request;

/// A running example; killed on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with `ADDR=127.0.0.1:0` (and `envs`), and reads the
/// `listening on http://…` line it prints.
pub fn start(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> (Running, String) {
    let (running, authority, _) = start_telling(binary, args, envs);
    (running, authority)
}

/// [`start`], and the whole `listening on` line.
pub fn start_telling(
    binary: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Running, String, String) {
    let mut child = Command::new(binary)
        .args(args)
        .env("ADDR", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        // Tests log in many users from one address; a test of the limit
        // passes `--login-rate`, which wins over this.
        .env("SSE_LOGIN_RATE", "0")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "{binary} exited before listening"
        );
        if let Some(rest) = line.trim().split("listening on http://").nth(1) {
            let authority = rest.split(['/', ' ']).next().unwrap().to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            let told = line.trim().to_owned();
            std::thread::spawn(move || for _ in reader.lines() {});
            return (running, authority, told);
        }
    }
}

/// Logs in as `user` through the notifications app's `POST /api/login`;
/// returns the `sid=…` cookie.
pub async fn login_json(authority: &str, user: &str) -> String {
    let mut login = Request::new("POST", "/api/login")
        .header("content-type", "application/json")
        .body(format!(r#"{{"user":"{user}"}}"#))
        .send(authority)
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    login.read_to_end(Duration::from_secs(2)).await.unwrap();
    cookie
}

/// Logs in as `user` through the minimal examples' `/login/{user}`;
/// returns the `sid=…` cookie.
pub async fn login(authority: &str, user: &str) -> String {
    let mut login = Request::new("POST", format!("/login/{user}"))
        .send(authority)
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    login.read_to_end(Duration::from_secs(2)).await.unwrap();
    cookie
}

/// The resident set size of process `pid`, in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of an unlabelled metric in the app's `/metrics`.
pub async fn metric(authority: &str, name: &str) -> u64 {
    let mut response = Request::get("/metrics").send(authority).await.unwrap();
    let body = String::from_utf8(
        response
            .read_to_end(Duration::from_secs(5))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    body.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

/// Waits until the app reports `active` open streams and hub subscriptions.
pub async fn wait_for_streams(authority: &str, active: u64) {
    for _ in 0..300 {
        if metric(authority, "sse_active_connections").await == active
            && metric(authority, "sse_hub_subscriptions").await == active
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "expected {active} open streams; the app reports {} streams and {} hub subscriptions",
        metric(authority, "sse_active_connections").await,
        metric(authority, "sse_hub_subscriptions").await
    );
}

/// A small deterministic random number generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}
