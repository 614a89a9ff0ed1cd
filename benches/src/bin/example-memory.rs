//! Memory per idle stream in the example app itself: the notifications
//! server on its in-memory store, many logged-in users, several tabs each.
//!
//! ```text
//! cargo build --release -p examples --bin notifications -p sse-benches --bin example-memory
//! ./target/release/example-memory                 # 19,000 streams over 5,000 users
//! ./target/release/example-memory --quick         # 600 streams, seconds
//! ./target/release/example-memory -- --max-request-head 409600   # extra server flags
//! ```
//!
//! It starts the server (`--store memory`), logs every user in, reads the
//! server's RSS, opens the streams (each reads its response head and the
//! first event) and, once all are open and idle for two seconds, reads the
//! RSS again: the difference over the number of streams is what one idle
//! stream costs, everything included (connection, HTTP buffers, the
//! layer's state, the hub's index, the app's per-stream work). Logins come
//! first so that sessions are not counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sse_benches::{login, rss_kib};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(about = "RSS per idle stream in the notifications example app")]
struct Cli {
    /// Streams to open.
    #[arg(long, default_value_t = 19_000)]
    streams: usize,
    /// Users they are spread over (round robin).
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// 600 streams over 200 users.
    #[arg(long)]
    quick: bool,
    /// The server binary (default: `notifications` next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// More flags for the server.
    #[arg(last = true)]
    server_args: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> Result<(), String> {
    if cli.quick {
        cli.streams = 600;
        cli.users = 200;
    }
    let users = cli.users.clamp(1, cli.streams.max(1));
    let server = match cli.server.clone() {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("notifications"),
    };
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?;
    let per_user = cli.streams.div_ceil(users);
    let mut child = Command::new(&server)
        .args(["--addr", &addr.to_string(), "--store", "memory"])
        .args(["--max-connections", &(cli.streams + 500).to_string()])
        .args(["--max-connections-per-user", &per_user.max(1).to_string()])
        .args(["--heartbeat-secs", "600", "--request-timeout-secs", "60"])
        // Every user logs in from this one address.
        .args(["--login-rate", "0"])
        .args(&cli.server_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (cargo build --release -p examples --bin notifications)",
                server.display()
            )
        })?;
    let pid = child.id().ok_or("the server exited")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.contains("listening on") => break,
            Ok(Some(_)) => {}
            _ => return Err("the server did not start".to_owned()),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(64));
    let mut logins = Vec::with_capacity(users);
    for user in 0..users {
        let limit = limit.clone();
        logins.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            login(addr, &format!("user{user}")).await
        }));
    }
    let mut cookies = Vec::with_capacity(users);
    for login in logins {
        cookies.push(login.await.map_err(|e| e.to_string())??);
    }
    eprintln!(
        "{users} users logged in in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(256));
    let mut opening = Vec::with_capacity(cli.streams);
    for n in 0..cli.streams {
        let cookie = cookies[n % users].clone();
        let limit = limit.clone();
        opening.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            open(addr, &cookie).await
        }));
    }
    let mut streams = Vec::with_capacity(cli.streams);
    for open in opening {
        streams.push(open.await.map_err(|e| e.to_string())??);
    }
    eprintln!(
        "{} streams open in {:.1} s",
        streams.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_stream = (after.saturating_sub(before) * 1024) as f64 / streams.len() as f64;
    println!("| server flags | streams | users | RSS before | RSS with streams | per stream |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {users} | {:.1} MiB | {:.1} MiB | {per_stream:.0} B ({:.1} KiB) |",
        if cli.server_args.is_empty() {
            "(defaults)".to_owned()
        } else {
            format!("`{}`", cli.server_args.join(" "))
        },
        streams.len(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_stream / 1024.0,
    );
    drop(streams);
    let _ = child.kill().await;
    Ok(())
}

/// Opens one stream and reads until its first event has arrived.
async fn open(addr: SocketAddr, cookie: &str) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "GET /api/notifications/stream HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\ncookie: {cookie}\r\n\r\n"
    );
    socket
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut read = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), socket.read(&mut buf))
            .await
            .map_err(|_| "no first event within 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "closed before the first event: {}",
                String::from_utf8_lossy(&read)
            ));
        }
        read.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&read, b"\r\n\r\n") {
            if !read.starts_with(b"HTTP/1.1 200") {
                return Err(format!("{}", String::from_utf8_lossy(&read[..end])));
            }
            if find(&read[end + 4..], b"\n\n").is_some() {
                return Ok(socket);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
