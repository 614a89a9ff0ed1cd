//! Where Redis is, and a prefix per test so tests share it safely.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

/// `REDIS_URL`, or the local Redis every CI machine runs.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key/channel prefix unique to this test run.
pub fn prefix(test: &str) -> String {
    format!("test:{test}:{}:{:?}:", std::process::id(), Instant::now())
}

pub fn required<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        panic!("Redis is required for this test (start it, or set REDIS_URL): {e}")
    })
}
