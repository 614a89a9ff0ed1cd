//! Command-line flags, each with an environment fallback.

use std::time::Duration;

pub(crate) const HELP: &str = "\
notifications: the notifications demo app, built only from the sse-layer crates.

Usage: notifications [OPTIONS]

Options (each falls back to the environment variable in brackets):
  --addr ADDR                    listen address [SSE_ADDR] (default 127.0.0.1:3000)
  --heartbeat-secs SECS          heartbeat interval, may be fractional [SSE_HEARTBEAT_SECS] (default 15)
  --store URL                    where notifications and sessions live [SSE_STORE]
                                   (default sqlite://notifications.db): sqlite://PATH,
                                   memory, postgres://USER@HOST/DB, redis://HOST:PORT
  --hub URL                      how events reach connections [SSE_HUB] (default memory):
                                   memory, redis://HOST:PORT
  --max-connections-per-user N   open streams per user [SSE_MAX_CONNECTIONS_PER_USER] (default 16)
  -h, --help                     print this help

Open the printed URL, log in with any name ([a-z0-9_-], up to 64 characters)
in two browsers, and send notifications between them. Several instances
with --hub redis://… and a shared --store serve the same users.
";

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) addr: String,
    pub(crate) heartbeat: Duration,
    pub(crate) store: String,
    pub(crate) hub: String,
    pub(crate) max_connections_per_user: usize,
}

/// `Ok(None)` when `--help` was asked for.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut addr = env("SSE_ADDR");
    let mut heartbeat = env("SSE_HEARTBEAT_SECS");
    let mut store = env("SSE_STORE");
    let mut hub = env("SSE_HUB");
    let mut per_user = env("SSE_MAX_CONNECTIONS_PER_USER");
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (flag.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        match name.as_str() {
            "--addr" => addr = Some(value),
            "--heartbeat-secs" => heartbeat = Some(value),
            "--store" => store = Some(value),
            "--hub" => hub = Some(value),
            "--max-connections-per-user" => per_user = Some(value),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let heartbeat_secs: f64 = match heartbeat {
        Some(text) => text
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .ok_or_else(|| {
                format!(
                    "--heartbeat-secs takes a number of seconds between 0 and 3600, not {text:?}"
                )
            })?,
        None => 15.0,
    };
    let max_connections_per_user = match per_user {
        Some(text) => text
            .parse()
            .ok()
            .filter(|n: &usize| *n > 0)
            .ok_or_else(|| {
                format!("--max-connections-per-user takes a positive number, not {text:?}")
            })?,
        None => 16,
    };
    Ok(Some(Config {
        addr: addr.unwrap_or_else(|| "127.0.0.1:3000".to_owned()),
        heartbeat: Duration::from_secs_f64(heartbeat_secs),
        store: store.unwrap_or_else(|| "sqlite://notifications.db".to_owned()),
        hub: hub.unwrap_or_else(|| "memory".to_owned()),
        max_connections_per_user,
    }))
}
