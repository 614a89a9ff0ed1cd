//! The load generator: starts each `bench-server` mode in its own process
//! and measures, in one run, the same scenarios against each:
//!
//! - connections held, and the time to connect them (request to first
//!   bytes);
//! - server RSS per idle connection;
//! - targeted delivery latency to one user among N connected, from the
//!   publish call to the bytes being read (p50/p99/p99.9/max over 10,000
//!   samples or 20 s, each published on a kept-alive control connection), at
//!   several N, and to their arrival in the client's socket (the kernel's
//!   receive timestamp), which puts a spike on the server's or the
//!   client's side; beside them, how late a thread of this process that
//!   only sleeps 1 ms at a time woke up meanwhile: the machine's own
//!   stalls, which no server can be faster than;
//! - broadcast fan-out: deliveries per second of events to everyone;
//! - replay throughput (ours only: the baselines have no replay).
//!
//! Clients connect from several 127.0.0.x source addresses and scan the
//! stream for event ends and `t=` timestamps, no full parsing. Everything
//! is loopback, bounded in count and time.
//!
//! `cargo run --release -p sse-benches --bin loadgen` (about 5 minutes);
//! `-- --quick` for a small smoke run; `-- --out DIR` writes
//! `results.json` and `latency.svg` there; `-- --replot DIR` redraws
//! `DIR/latency.svg` from `DIR/results.json`; `-- --modes a,b` picks the
//! servers, and `MODE@BIN` serves a mode by another build of
//! `bench-server` next to this binary, such as
//! `ours@bench-server-jemalloc` (see BENCHMARKS.md for building it);
//! `-- --pin` runs this process on CPU 0 and each server on CPU 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use sse_benches::{cpu_seconds, percentile, rss_kib};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

const MODES: [&str; 5] = ["ours", "broadcast", "map", "raw", "nchan"];
const SOURCE_ADDRESSES: u8 = 8;
/// The most time a step spends on latency samples.
const SAMPLING_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
struct Plan {
    steps: Vec<usize>,
    fanout_at: usize,
    fanout_events: usize,
    /// Bursts of `fanout_events`, back to back, each awaited in full.
    fanout_bursts: usize,
    latency_samples: usize,
    replay_users: usize,
    replay_events: usize,
    /// `--pin`: this process on CPU 0, the server on CPU 1, so neither
    /// preempts the other (how the tail latency was diagnosed).
    pin: bool,
}

impl Plan {
    fn full() -> Self {
        Self {
            steps: vec![1_000, 5_000, 10_000, 19_000],
            fanout_at: 10_000,
            fanout_events: 100,
            fanout_bursts: 5,
            // p99.9 of 10,000 is the tenth worst sample, not the second.
            latency_samples: 10_000,
            replay_users: 1_000,
            replay_events: 100,
            pin: false,
        }
    }

    fn quick() -> Self {
        Self {
            steps: vec![100, 300],
            fanout_at: 300,
            fanout_events: 20,
            fanout_bursts: 1,
            latency_samples: 100,
            replay_users: 20,
            replay_events: 20,
            pin: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Results {
    mode: String,
    connections: usize,
    connect_seconds: f64,
    rss_base_kib: u64,
    rss_idle_kib: u64,
    /// (connections, p50, p99, p99.9) in microseconds.
    latency: Vec<(usize, f64, f64, f64)>,
    /// Per step: the slowest sample (µs), how many took over 1 ms, and
    /// how many were taken.
    latency_tail: Vec<(f64, usize, usize)>,
    /// Per step: how late a thread of this process that only sleeps 1 ms
    /// at a time woke up (p99.9 and max, µs), measured during the samples:
    /// the machine's own stalls, beside ours.
    sleeper: Vec<(f64, f64)>,
    /// The same, from the publish to the event's arrival in the client's
    /// socket (the kernel's receive timestamp): the server's side of the
    /// latency, without the load generator's own scheduling.
    socket_latency: Vec<(usize, f64, f64, f64)>,
    fanout_connections: usize,
    fanout_per_second: f64,
    /// Server CPU time per delivery during the fan-out, in microseconds.
    fanout_cpu_us: f64,
    replay_per_second: Option<f64>,
}

impl Results {
    fn bytes_per_connection(&self) -> f64 {
        (self.rss_idle_kib.saturating_sub(self.rss_base_kib) as f64 * 1024.0)
            / self.connections.max(1) as f64
    }
}

/// What clients report about the events they read.
const PHASE_IDLE: u8 = 0;
const PHASE_TARGETED: u8 = 1;
const PHASE_COUNT: u8 = 2;
/// Counts only events with an `id:` other than the `connected` event every
/// stream opens with: the replayed notifications.
const PHASE_COUNT_IDS: u8 = 3;

struct Shared {
    phase: AtomicU8,
    counted: AtomicU64,
    /// (publish to read by the client, publish to arrival in its socket).
    latencies: mpsc::UnboundedSender<(u64, Option<u64>)>,
}

fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// Finds event ends and `data: t=<nanos>` lines in a byte stream, across
/// reads, without parsing the stream (HTTP heads and chunk sizes never
/// form a blank line or a data line).
#[derive(Default)]
struct Scanner {
    line_len: usize,
    prefix: [u8; 8],
    stamp: u64,
    has_stamp: bool,
    has_data: bool,
    has_id: bool,
    connected: bool,
}

impl Scanner {
    /// Calls `on_event(stamp, has_id)` for each completed event with data.
    fn scan(&mut self, bytes: &[u8], mut on_event: impl FnMut(Option<u64>, bool)) {
        for &b in bytes {
            if b == b'\n' {
                if self.line_len == 0 {
                    if self.has_data {
                        on_event(
                            self.has_stamp.then_some(self.stamp),
                            self.has_id && !self.connected,
                        );
                    }
                    self.has_data = false;
                    self.has_stamp = false;
                    self.has_id = false;
                    self.connected = false;
                }
                self.line_len = 0;
                continue;
            }
            if self.line_len < 8 {
                self.prefix[self.line_len] = b;
            }
            self.line_len += 1;
            if self.line_len == 3 && &self.prefix[..3] == b"id:" {
                self.has_id = true;
            }
            if self.line_len == 5 && &self.prefix[..5] == b"data:" {
                self.has_data = true;
            }
            if self.line_len == 8 && &self.prefix == b"event: c" {
                self.connected = true;
            }
            if self.line_len == 8 && &self.prefix == b"data: t=" {
                self.has_stamp = true;
                self.stamp = 0;
            } else if self.line_len > 8 && self.has_stamp && b.is_ascii_digit() {
                self.stamp = self.stamp * 10 + u64::from(b - b'0');
            }
        }
    }
}

/// Connects client `index` as user `u<index>`, waits for the first bytes,
/// then reads until the server closes. Returns once connected.
async fn connect(
    mode: &str,
    server: SocketAddr,
    index: usize,
    last_event_id: Option<&str>,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (index % usize::from(SOURCE_ADDRESSES)) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let request = if mode == "raw" {
        format!("u{index}\n")
    } else {
        let resume = last_event_id
            .map(|id| format!("last-event-id: {id}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /events?user=u{index} HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n{resume}\r\n"
        )
    };
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 4096];
    let mut scanner = Scanner::default();
    let n = stream.read(&mut buffer).await?;
    if n == 0 {
        return Err(std::io::Error::other("closed before the first bytes"));
    }
    // The kernel stamps each segment as it reaches the socket.
    let _ = setsockopt(&stream, sockopt::ReceiveTimestampns, &true);
    let report =
        move |shared: &Shared, stamp: Option<u64>, has_id: bool, arrived: Option<u64>| match shared
            .phase
            .load(Ordering::Relaxed)
        {
            PHASE_TARGETED => {
                if let Some(stamp) = stamp {
                    let _ = shared.latencies.send((
                        now_nanos().saturating_sub(stamp),
                        arrived.map(|arrived| arrived.saturating_sub(stamp)),
                    ));
                }
            }
            PHASE_COUNT => {
                shared.counted.fetch_add(1, Ordering::Relaxed);
            }
            PHASE_COUNT_IDS if has_id => {
                shared.counted.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        };
    scanner.scan(&buffer[..n], |stamp, has_id| {
        report(&shared, stamp, has_id, None)
    });
    Ok(tokio::spawn(async move {
        // Small buffers: 19,000 idle clients should not need 19,000 × 4 KiB.
        let mut buffer = vec![0u8; 2048];
        let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
        while let Ok((n, arrived)) = read_stamped(&stream, &mut buffer, &mut control).await {
            if n == 0 {
                break;
            }
            scanner.scan(&buffer[..n], |stamp, has_id| {
                report(&shared, stamp, has_id, arrived)
            });
        }
    }))
}

/// Reads into `buffer`, with the kernel's receive timestamp of the data
/// (`SO_TIMESTAMPNS`, nanoseconds since the epoch) when it gave one.
async fn read_stamped(
    stream: &tokio::net::TcpStream,
    buffer: &mut [u8],
    control: &mut Vec<u8>,
) -> std::io::Result<(usize, Option<u64>)> {
    let fd = stream.as_raw_fd();
    loop {
        stream.readable().await?;
        let read = stream.try_io(Interest::READABLE, || {
            let mut slices = [std::io::IoSliceMut::new(&mut *buffer)];
            let message = recvmsg::<()>(fd, &mut slices, Some(&mut *control), MsgFlags::empty())
                .map_err(std::io::Error::from)?;
            let arrived = message.cmsgs().ok().and_then(|mut messages| {
                messages.find_map(|message| match message {
                    ControlMessageOwned::ScmTimestampns(at) => u64::try_from(at.tv_sec())
                        .ok()
                        .zip(u64::try_from(at.tv_nsec()).ok())
                        .map(|(seconds, nanos)| seconds * 1_000_000_000 + nanos),
                    _ => None,
                })
            });
            Ok((message.bytes, arrived))
        });
        match read {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Posts to the control port; returns the answer's body.
async fn control(control: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(control).await.unwrap();
    stream
        .write_all(format!("POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
        .unwrap_or_default()
}

/// A keep-alive connection to the control port, so that each latency
/// sample is one request on an open connection rather than a new one.
struct KeepAlive {
    addr: SocketAddr,
    stream: Option<BufReader<tokio::net::TcpStream>>,
}

impl KeepAlive {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// Posts to `path` and waits for the whole answer (status 200).
    async fn post(&mut self, path: &str) {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(BufReader::new(
                tokio::net::TcpStream::connect(self.addr).await.unwrap(),
            )),
        };
        stream
            .get_mut()
            .write_all(
                format!("POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut length = 0;
        loop {
            line.clear();
            stream.read_line(&mut line).await.unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
    }
}

/// A thread that sleeps 1 ms at a time and records how late it woke up
/// (ns): what the machine does to a process that asks for nothing else.
struct Sleeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl Sleeper {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut late = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let asked = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let slept = asked.elapsed().saturating_sub(Duration::from_millis(1));
                late.push(u64::try_from(slept.as_nanos()).unwrap_or(u64::MAX));
            }
            late
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

async fn wait_for(count: &AtomicU64, target: u64, limit: Duration) -> bool {
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < target {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

async fn run_mode(mode: &str, plan: &Plan) -> Results {
    // `ours@bench-server-jemalloc`: the mode, served by another build
    // of bench-server next to this binary (an allocator's, say).
    let (server_mode, binary) = mode.split_once('@').unwrap_or((mode, "bench-server"));
    let server_bin = std::env::current_exe().unwrap().with_file_name(binary);
    let mut server = if plan.pin {
        let mut pinned = tokio::process::Command::new("taskset");
        pinned.args(["-c", "1"]).arg(&server_bin);
        pinned
    } else {
        tokio::process::Command::new(&server_bin)
    };
    let mut server = server
        .args([server_mode, "127.0.0.1:0", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (build it with cargo build --release -p sse-benches)",
                server_bin.display()
            )
        });
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .await
        .unwrap();
    let mut addresses = ready
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{mode}: bench-server did not start: {ready:?}"))
        .split(' ');
    let stream_addr: SocketAddr = addresses.next().unwrap().parse().unwrap();
    let control_addr: SocketAddr = addresses.next().unwrap().parse().unwrap();
    // A mode that fronts another server (nchan) names the process to measure.
    let server_pid = server.id().unwrap();
    let pid = addresses
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or(server_pid);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_IDLE),
        counted: AtomicU64::new(0),
        latencies: latency_tx,
    });
    let mut results = Results {
        mode: mode.to_owned(),
        rss_base_kib: rss_kib(pid),
        ..Results::default()
    };
    let mut clients = Vec::new();
    let mut connecting = Duration::ZERO;
    for &step in &plan.steps {
        // Connect up to `step`, 256 at a time.
        let started = Instant::now();
        while clients.len() < step {
            let batch: Vec<_> = (clients.len()..step.min(clients.len() + 256))
                .map(|i| connect(mode, stream_addr, i, None, shared.clone()))
                .collect();
            for client in futures_util::future::join_all(batch).await {
                clients.push(client.unwrap_or_else(|e| {
                    panic!("{mode}: connecting client {}: {e}", clients.len())
                }));
            }
        }
        connecting += started.elapsed();
        results.connections = clients.len();
        results.connect_seconds = connecting.as_secs_f64();

        // Targeted latency to one user among `step`.
        shared.phase.store(PHASE_TARGETED, Ordering::SeqCst);
        let mut latencies = Vec::with_capacity(plan.latency_samples);
        let mut in_socket = Vec::with_capacity(plan.latency_samples);
        let mut user = 7usize;
        let mut publisher = KeepAlive::new(control_addr);
        let sleeper = Sleeper::start();
        let sampling = Instant::now();
        for _ in 0..plan.latency_samples {
            // A server whose every sample takes milliseconds (the
            // broadcast baseline at 19,000 streams) stops early.
            if sampling.elapsed() > SAMPLING_LIMIT {
                break;
            }
            user = (user * 7919 + 13) % step;
            publisher.post(&format!("/user/u{user}")).await;
            let (latency, arrived) =
                tokio::time::timeout(Duration::from_secs(5), latency_rx.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{mode}: a targeted event never arrived"))
                    .unwrap();
            latencies.push(latency);
            in_socket.extend(arrived);
        }
        shared.phase.store(PHASE_IDLE, Ordering::SeqCst);
        let mut late = sleeper.stop();
        late.sort_unstable();
        results.sleeper.push((
            percentile(&late, 0.999) as f64 / 1_000.0,
            late.last().copied().unwrap_or_default() as f64 / 1_000.0,
        ));
        latencies.sort_unstable();
        in_socket.sort_unstable();
        let micros = |q| percentile(&latencies, q) as f64 / 1_000.0;
        results
            .latency
            .push((step, micros(0.5), micros(0.99), micros(0.999)));
        results.latency_tail.push((
            latencies.last().copied().unwrap_or_default() as f64 / 1_000.0,
            latencies.iter().filter(|&&l| l > 1_000_000).count(),
            latencies.len(),
        ));
        let micros = |q| percentile(&in_socket, q) as f64 / 1_000.0;
        results
            .socket_latency
            .push((step, micros(0.5), micros(0.99), micros(0.999)));
        eprintln!(
            "  {mode}: {step} connections, targeted p50 {:.0} µs, p99 {:.0} µs",
            micros(0.5),
            micros(0.99)
        );
    }
    // Idle memory, before any broadcast: a burst leaves the allocator's
    // high-water mark behind in every mode, and that is not what an idle
    // connection costs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.rss_idle_kib = rss_kib(pid);

    // Fan-out at `fanout_at` connections: close the others first.
    for client in clients.drain(plan.fanout_at.min(clients.len())..) {
        client.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let step = clients.len();
        shared.counted.store(0, Ordering::SeqCst);
        shared.phase.store(PHASE_COUNT, Ordering::SeqCst);
        let mut expected = 0;
        let mut complete = true;
        let cpu_before = cpu_seconds(pid);
        let sent = Instant::now();
        for _ in 0..plan.fanout_bursts {
            expected += (step * plan.fanout_events) as u64;
            control(control_addr, &format!("/all?n={}", plan.fanout_events)).await;
            complete &= wait_for(&shared.counted, expected, Duration::from_secs(120)).await;
        }
        let elapsed = sent.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        shared.phase.store(PHASE_IDLE, Ordering::SeqCst);
        let delivered = shared.counted.load(Ordering::SeqCst);
        results.fanout_connections = step;
        results.fanout_per_second = delivered as f64 / elapsed;
        results.fanout_cpu_us = cpu * 1e6 / delivered.max(1) as f64;
        eprintln!(
            "  {mode}: fan-out at {step} connections, {delivered}/{expected} deliveries in {elapsed:.2} s, server CPU {cpu:.2} s{}",
            if complete { "" } else { " (incomplete)" }
        );
    }

    // Close the idle clients first: the server holds at most 20,000 files.
    for client in clients.drain(..) {
        client.abort();
    }
    if mode == "ours" {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The answer is the log's position before the seeding: clients
        // resume from it.
        let start = control(
            control_addr,
            &format!(
                "/seed?users={}&events={}",
                plan.replay_users, plan.replay_events
            ),
        )
        .await;
        shared.counted.store(0, Ordering::SeqCst);
        shared.phase.store(PHASE_COUNT_IDS, Ordering::SeqCst);
        let started = Instant::now();
        let mut replaying = Vec::new();
        for i in 0..plan.replay_users {
            replaying.push(
                connect(mode, stream_addr, i, Some(&start), shared.clone())
                    .await
                    .unwrap(),
            );
        }
        let expected = (plan.replay_users * plan.replay_events) as u64;
        wait_for(&shared.counted, expected, Duration::from_secs(120)).await;
        let replayed = shared.counted.load(Ordering::SeqCst);
        let elapsed = started.elapsed().as_secs_f64();
        results.replay_per_second = Some(replayed as f64 / elapsed);
        eprintln!("  {mode}: replayed {replayed}/{expected} events in {elapsed:.2} s");
        for client in replaying {
            client.abort();
        }
    }
    let _ = server.kill().await;
    if pid != server_pid {
        // The fronted server (nginx) outlives a killed bench-server.
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    results
}

fn svg(results: &[Results]) -> String {
    let colors = [
        "#d9480f", "#1c7ed6", "#2b8a3e", "#868e96", "#9c36b5", "#e67700",
    ];
    let max_x = results
        .iter()
        .flat_map(|r| r.latency.iter().map(|l| l.0))
        .max()
        .unwrap_or(1) as f64;
    // Log scale: the baselines span three orders of magnitude.
    let decades = |v: f64| v.max(1.0).log10();
    let (lowest, highest) = results
        .iter()
        .flat_map(|r| r.latency.iter().map(|l| l.2))
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min_decade = decades(lowest.min(highest)).floor();
    let max_decade = decades(highest).ceil().max(min_decade + 1.0);
    let (w, h, left, bottom) = (720.0, 420.0, 70.0, 50.0);
    let x = |v: f64| left + v / max_x * (w - left - 20.0);
    let y = |v: f64| {
        h - bottom - (decades(v) - min_decade) / (max_decade - min_decade) * (h - bottom - 30.0)
    };
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="18" font-size="14">Targeted delivery latency to one user, p99 (µs, log scale), vs connections held</text>"#,
        left
    );
    let _ = write!(
        out,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="30" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - 20.0,
        h - bottom,
        h - bottom
    );
    let mut decade = min_decade;
    while decade <= max_decade {
        let v = 10f64.powf(decade);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{grid}" x2="{right}" y2="{grid}" stroke="#e9ecef"/><text x="{label_x}" y="{label_y}" text-anchor="end">{v:.0}</text>"##,
            grid = y(v),
            right = w - 20.0,
            label_x = left - 6.0,
            label_y = y(v) + 4.0,
        );
        decade += 1.0;
    }
    for r in results
        .iter()
        .flat_map(|r| r.latency.iter().map(|l| l.0))
        .collect::<std::collections::BTreeSet<_>>()
    {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{r}</text>"#,
            x(r as f64),
            h - bottom + 18.0
        );
    }
    for (i, result) in results.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = result
            .latency
            .iter()
            .map(|l| format!("{:.1},{:.1}", x(l.0 as f64), y(l.2)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for l in &result.latency {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(l.0 as f64),
                y(l.2)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            left + 16.0,
            50.0 + 16.0 * i as f64,
            result.mode
        );
    }
    out.push_str("</svg>\n");
    out
}

fn json(results: &[Results]) -> String {
    let items: Vec<String> = results
        .iter()
        .map(|r| {
            let latency: Vec<String> = r.latency.iter().map(|l| format!(r#"{{"connections":{},"p50_us":{:.1},"p99_us":{:.1},"p999_us":{:.1}}}"#, l.0, l.1, l.2, l.3)).collect();
            format!(
                r#"{{"mode":"{}","connections":{},"connect_seconds":{:.2},"rss_base_kib":{},"rss_idle_kib":{},"bytes_per_connection":{:.0},"fanout_connections":{},"fanout_per_second":{:.0},"fanout_cpu_us":{:.3},"replay_per_second":{},"latency":[{}]}}"#,
                r.mode, r.connections, r.connect_seconds, r.rss_base_kib, r.rss_idle_kib, r.bytes_per_connection(), r.fanout_connections, r.fanout_per_second, r.fanout_cpu_us,
                r.replay_per_second.map_or("null".to_owned(), |v| format!("{v:.0}")), latency.join(",")
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n"))
}

/// The latency series of a `results.json`, to redraw its plot.
fn read_json(text: &str) -> Vec<Results> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let number = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Results {
            mode: r["mode"].as_str().unwrap_or_default().to_owned(),
            latency: r["latency"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    (
                        number(l, "connections") as usize,
                        number(l, "p50_us"),
                        number(l, "p99_us"),
                        number(l, "p999_us"),
                    )
                })
                .collect(),
            ..Results::default()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--replot")
        .and_then(|i| args.get(i + 1))
    {
        let dir = PathBuf::from(dir);
        let results = read_json(&std::fs::read_to_string(dir.join("results.json")).unwrap());
        std::fs::write(dir.join("latency.svg"), svg(&results)).unwrap();
        eprintln!("wrote {}/latency.svg", dir.display());
        return;
    }
    let mut plan = if args.iter().any(|a| a == "--quick") {
        Plan::quick()
    } else {
        Plan::full()
    };
    if args.iter().any(|a| a == "--pin") {
        plan.pin = true;
        // Every thread of this process, the runtime's included.
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
        assert!(
            pinned.is_ok_and(|s| s.success()),
            "--pin needs taskset (util-linux)"
        );
    }
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let modes: Vec<String> = args
        .iter()
        .position(|a| a == "--modes")
        .and_then(|i| args.get(i + 1))
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| MODES.iter().map(|m| (*m).to_owned()).collect());
    eprintln!("plan: {plan:?}");

    let mut results = Vec::new();
    for mode in &modes {
        eprintln!("== {mode}");
        results.push(run_mode(mode, &plan).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    println!(
        "| server | connections | connect all | RSS per idle connection | broadcast fan-out (at {} connections) | server CPU per delivery | replay |",
        plan.fanout_at
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        println!(
            "| {} | {} | {:.2} s | {:.0} B | {:.0}/s | {:.2} µs | {} |",
            r.mode,
            r.connections,
            r.connect_seconds,
            r.bytes_per_connection(),
            r.fanout_per_second,
            r.fanout_cpu_us,
            r.replay_per_second
                .map_or("—".to_owned(), |v| format!("{v:.0} events/s"))
        );
    }
    println!(
        "\n| server | connections | targeted p50 | p99 | p99.9 | max | samples over 1 ms | a sleeping thread woke late p99.9 / max |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        for ((l, tail), sleeper) in r.latency.iter().zip(&r.latency_tail).zip(&r.sleeper) {
            println!(
                "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} of {} | {:.0} / {:.0} µs |",
                r.mode, l.0, l.1, l.2, l.3, tail.0, tail.1, tail.2, sleeper.0, sleeper.1
            );
        }
    }
    // The same samples up to the kernel's receive timestamp: a spike here
    // is on the server's side of the socket, one only above is the load
    // generator's.
    println!(
        "\n| server | connections | in the client's socket p50 | p99 | p99.9 | read by the client p99.9 |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &results {
        for (s, l) in r.socket_latency.iter().zip(&r.latency) {
            println!(
                "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
                r.mode, s.0, s.1, s.2, s.3, l.3
            );
        }
    }
    if let Some(ours) = results.iter().find(|r| r.mode == "ours") {
        println!(
            "\n| ratio ours / baseline | fan-out | server CPU per delivery | RSS per idle connection | targeted p99 at {} |",
            ours.connections
        );
        println!("| --- | --- | --- | --- | --- |");
        for other in results.iter().filter(|r| r.mode != "ours") {
            let p99 = |r: &Results| r.latency.last().map_or(f64::NAN, |l| l.2);
            println!(
                "| vs {} | {:.2}x | {:.2}x | {:.2}x ({:+.0} B) | {:.3}x |",
                other.mode,
                ours.fanout_per_second / other.fanout_per_second,
                ours.fanout_cpu_us / other.fanout_cpu_us,
                ours.bytes_per_connection() / other.bytes_per_connection(),
                ours.bytes_per_connection() - other.bytes_per_connection(),
                p99(ours) / p99(other)
            );
        }
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.json"), json(&results)).unwrap();
        std::fs::write(dir.join("latency.svg"), svg(&results)).unwrap();
        eprintln!("wrote {}/results.json and latency.svg", dir.display());
    }
}
