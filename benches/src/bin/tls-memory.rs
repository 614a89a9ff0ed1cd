//! Memory per idle event stream over TLS, beside plain HTTP: `bench-server`
//! in `ours` (plain TCP, streams written directly) and `ours-tls` (TLS,
//! every request through hyper) takes `--streams` idle streams, opened
//! three ways, and the server's RSS growth per stream is reported:
//!
//! - `plain h1`: one connection per stream, as `EventSource` over http;
//! - `tls h1`: one TLS connection per stream (ALPN `http/1.1`), with
//!   hyper's default read buffer and with it capped at 8 KiB
//!   (`max_read_buffer`, as the demo does);
//! - `tls h2`: `--per-connection` streams on each TLS connection (ALPN
//!   `h2`), as a browser's tabs share one.
//!
//! `tls-memory [--streams N] [--per-connection K] [--quick]`. Needs
//! `bench-server` beside it (`cargo build --release -p sse-benches`).
//! The figures are printed as a Markdown table (BENCHMARKS.md, "Memory
//! per idle stream over TLS").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

#[derive(Parser)]
struct Args {
    /// Idle streams per way of opening them.
    #[arg(long, default_value_t = 5_000)]
    streams: usize,
    /// Streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// A small run (300 streams): that it works, not its figures.
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, Debug)]
enum Way {
    PlainH1,
    TlsH1,
    TlsH1Capped,
    TlsH2,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::PlainH1 => "plain h1 (direct writer)",
            Way::TlsH1 => "tls h1 (hyper)",
            Way::TlsH1Capped => "tls h1 (hyper, 8 KiB read buffer)",
            Way::TlsH2 => "tls h2 (hyper)",
        }
    }

    fn server_mode(self) -> &'static str {
        match self {
            Way::PlainH1 => "ours",
            Way::TlsH1 | Way::TlsH2 => "ours-tls",
            Way::TlsH1Capped => "ours-tls-8k",
        }
    }
}

fn connector(alpn: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let cert = include_bytes!("../../../sse-tower/tests/tls/first.cert.pem");
    roots
        .add(CertificateDer::from_pem_slice(cert).unwrap())
        .unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// Reads an HTTP/1.1 response head and checks it is a 200.
async fn read_head(reader: &mut (impl AsyncReadExt + Unpin)) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = reader.read(&mut byte).await.unwrap();
        assert!(n == 1, "closed before the head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
}

fn request(user: usize) -> Vec<u8> {
    format!(
        "GET /events?user=u{user} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
}

/// Opens `streams` idle streams `way`; what keeps them open.
async fn open(
    way: Way,
    addr: SocketAddr,
    streams: usize,
    per_connection: usize,
) -> Vec<Box<dyn Send>> {
    let mut held: Vec<Box<dyn Send>> = Vec::new();
    match way {
        Way::PlainH1 => {
            for user in 0..streams {
                let mut socket = TcpStream::connect(addr).await.unwrap();
                socket.write_all(&request(user)).await.unwrap();
                read_head(&mut socket).await;
                held.push(Box::new(socket));
            }
        }
        Way::TlsH1 | Way::TlsH1Capped => {
            let tls = connector(b"http/1.1");
            for user in 0..streams {
                let socket = TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let mut stream = tls.connect(name, socket).await.unwrap();
                stream.write_all(&request(user)).await.unwrap();
                read_head(&mut stream).await;
                held.push(Box::new(stream));
            }
        }
        Way::TlsH2 => {
            let tls = connector(b"h2");
            let mut user = 0;
            while user < streams {
                let socket = TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let stream = tls.connect(name, socket).await.unwrap();
                let (mut sender, connection) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .unwrap();
                tokio::spawn(connection);
                for _ in 0..per_connection.min(streams - user) {
                    let request =
                        http::Request::get(format!("https://localhost/events?user=u{user}"))
                            .header("accept", "text/event-stream")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    held.push(Box::new(response));
                    user += 1;
                }
                held.push(Box::new(sender));
            }
        }
    }
    held
}

/// Starts `bench-server`, opens the streams, and returns bytes per stream.
async fn measure(way: Way, streams: usize, per_connection: usize) -> (f64, Duration) {
    let server_bin = std::env::current_exe()
        .unwrap()
        .with_file_name("bench-server");
    let mut server = tokio::process::Command::new(&server_bin)
        .args([way.server_mode(), "127.0.0.1:0", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", server_bin.display()));
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .await
        .unwrap();
    let addr: SocketAddr = ready
        .trim()
        .strip_prefix("ready ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("bench-server did not start: {ready:?}"))
        .parse()
        .unwrap();
    let pid = server.id().unwrap();
    // Warm up: the first connections allocate what every later one shares.
    let warm = open(way, addr, 50.min(streams), per_connection).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss_kib(pid);
    let started = Instant::now();
    let held = open(way, addr, streams, per_connection).await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    drop((held, warm));
    let _ = server.kill().await;
    (
        idle.saturating_sub(base) as f64 * 1024.0 / streams as f64,
        opened,
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let streams = if args.quick { 300 } else { args.streams };
    let per_connection = args.per_connection.max(1);
    println!("| way | streams | per connection | RSS per idle stream | opened in |");
    println!("| --- | --- | --- | --- | --- |");
    for way in [Way::PlainH1, Way::TlsH1, Way::TlsH1Capped, Way::TlsH2] {
        let (bytes, opened) = measure(way, streams, per_connection).await;
        let per = match way {
            Way::TlsH2 => per_connection,
            _ => 1,
        };
        println!(
            "| {} | {streams} | {per} | {bytes:.0} B | {:.2} s |",
            way.name(),
            opened.as_secs_f64()
        );
    }
}
