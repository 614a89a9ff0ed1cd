//! Many nodes of the example server behind one hub and one store, with
//! load clients that behave like browser tabs, through a rolling restart
//! and a rolling `SIGKILL`.
//!
//! ```text
//! cargo build --release -p examples --bin notifications
//! cargo run --release -p sse-benches --bin many-nodes            # 6 nodes x 15,000 streams
//! cargo run --release -p sse-benches --bin many-nodes -- --quick # 3 nodes x 60, seconds
//! ```
//!
//! Per hub engine (Redis, PostgreSQL `LISTEN/NOTIFY`, NATS; the store is
//! PostgreSQL for all, a fresh database per engine) it starts the nodes
//! and one load-client process per node (each under the 20,000-open-files
//! cap), logs every user in and opens `--tabs` streams per user, each tab
//! on another node. Then it measures, in this order:
//!
//! 1. memory per stream per node (RSS delta over the connect phase);
//! 2. targeted latency: notifications `POST`ed to a node that holds none
//!    of the user's tabs, timed from before the `POST` to each tab's
//!    receipt (so it includes the store's commit);
//! 3. everyone-broadcasts (`POST /api/broadcasts`): latency to every
//!    stream, CPU per delivery per node and the broker's CPU;
//! 4. a rolling restart: each node in turn taken out of the clients'
//!    balancer, stopped with SIGTERM and started again, while a sender
//!    keeps notifying random users through the other nodes; per node, the
//!    time until every stream is back and the peak connect rate;
//! 5. the same with SIGKILL;
//! 6. every tab's record against everything sent: lost, duplicated, out
//!    of order, leaked to another user.
//!
//! Figures are printed as Markdown and written as JSON (`--out`).

mod client;
mod faults;
mod procs;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::Serialize;
use sse_benches::{cpu_seconds, login, percentile, rss_kib};
use sse_conformance::client::Request;
use tokio::sync::Mutex;

use crate::client::{ClientArgs, first_node, user_name};
use crate::procs::{ClientProc, Node, NodeConfig, cpu_of_named};
use crate::wire::now_micros;

const ADMIN_TOKEN: &str = "many-nodes-operator-token";

#[derive(Parser)]
#[command(about = "Many example-server nodes, one hub, one store, rolling restarts")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    plan: Plan,
}

#[derive(Subcommand)]
enum Sub {
    /// A load-client process (started by the run itself).
    #[command(hide = true)]
    Client(ClientArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Plan {
    /// Hub engines to run, side by side.
    #[arg(long, value_delimiter = ',', default_value = "redis,postgres,nats")]
    engines: Vec<String>,
    /// Node processes (and as many load-client processes).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Streams per node at the start; with one node away the others hold
    /// them all, so keep `nodes x streams / (nodes - 1)` under 19,500.
    #[arg(long, default_value_t = 15_000)]
    streams_per_node: u32,
    /// Streams (tabs) per user.
    #[arg(long, default_value_t = 3)]
    tabs: u32,
    /// Users per org.
    #[arg(long, default_value_t = 50)]
    org_size: u32,
    /// Targeted notifications timed one at a time.
    #[arg(long, default_value_t = 300)]
    latency_posts: usize,
    /// Everyone-broadcasts.
    #[arg(long, default_value_t = 10)]
    broadcasts: u32,
    /// Notifications per second during the restarts.
    #[arg(long, default_value_t = 200)]
    send_rate: u32,
    /// A small run for CI: 3 nodes x 60 streams, a few seconds per engine.
    #[arg(long)]
    quick: bool,
    /// Run the fault harness instead of the rolling restarts: brokers of
    /// the run's own, and each fault of `faults.rs` injected in turn.
    #[arg(long)]
    faults: bool,
    /// How long each fault lasts, in seconds.
    #[arg(long, default_value_t = 4.0)]
    fault_secs: f64,
    /// The notifications server binary (default: beside this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Plan {
    fn apply_quick(&mut self) {
        if self.quick {
            self.nodes = 3;
            self.streams_per_node = 60;
            self.org_size = 10;
            self.latency_posts = 20;
            self.broadcasts = 3;
            self.send_rate = 50;
            self.fault_secs = self.fault_secs.min(2.0);
        }
    }

    fn users(&self) -> u32 {
        self.streams_per_node * self.nodes as u32 / self.tabs
    }

    fn streams(&self) -> usize {
        (self.users() * self.tabs) as usize
    }
}

#[derive(Debug, Default, Serialize)]
struct Cycle {
    node: usize,
    stop_ms: u64,
    back_ms: Option<u64>,
    peak_connects_per_s: f64,
}

#[derive(Debug, Default, Serialize)]
struct EngineResult {
    engine: String,
    nodes: usize,
    streams: usize,
    connect_all_s: f64,
    rss_per_stream_b: Vec<f64>,
    targeted_us: [u32; 4],
    broadcast_us: [u32; 4],
    broadcast_cpu_per_delivery_us: Vec<f64>,
    broker_cpu_per_broadcast_ms: f64,
    store_cpu_per_broadcast_ms: f64,
    restart: Vec<Cycle>,
    kill: Vec<Cycle>,
    faults: Vec<faults::FaultResult>,
    sent: usize,
    /// Sends refused with `503` and tried again.
    send_refused: u64,
    /// Sends whose answer never came (stored or not: not expected, and
    /// counted as `unexpected` if they arrive).
    send_ambiguous: u64,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    leaked: u64,
    unauthorized: u64,
    /// From the last send to the verdict.
    settle_s: f64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(Sub::Client(args)) = cli.command {
        runtime.block_on(client::run(args));
        return std::process::ExitCode::SUCCESS;
    }
    let mut plan = cli.plan;
    plan.apply_quick();
    match runtime.block_on(run(plan)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(plan: Plan) -> Result<(), String> {
    let server = match &plan.server {
        Some(server) => server.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("notifications"),
    };
    if !server.exists() {
        return Err(format!(
            "{} not found: build it (cargo build [--release] -p examples --bin notifications) or pass --server",
            server.display()
        ));
    }
    eprintln!(
        "plan: {} nodes x {} streams ({} users x {} tabs), engines {:?}",
        plan.nodes,
        plan.streams_per_node,
        plan.users(),
        plan.tabs,
        plan.engines
    );
    let mut results = Vec::new();
    for engine in &plan.engines {
        eprintln!("== {engine}");
        results.push(run_engine(&plan, engine, &server).await?);
    }
    print_markdown(&results);
    if let Some(out) = &plan.out {
        let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}

fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// Every client's stats, summed: (connected, connects, broadcasts received).
async fn totals(clients: &Mutex<Vec<ClientProc>>) -> Result<(u64, u64, u64), String> {
    let mut sum = (0, 0, 0);
    for client in clients.lock().await.iter_mut() {
        let stats = client.ask("stats").await?;
        let field = |name: &str| stats[name].as_u64().unwrap_or(0);
        sum.0 += field("connected");
        sum.1 += field("connects");
        sum.2 += field("broadcasts");
    }
    Ok(sum)
}

async fn tell_all(clients: &Mutex<Vec<ClientProc>>, command: &str) -> Result<(), String> {
    for client in clients.lock().await.iter_mut() {
        client.ask(command).await?;
    }
    Ok(())
}

/// `POST /api/notifications` to `user`, stamped; the stored id.
async fn notify(addr: SocketAddr, cookie: &str, user: u32, title: &str) -> Result<u64, String> {
    let body = serde_json::json!({
        "user": user_name(user),
        "title": title,
        "data": { "sentAt": now_micros() },
    });
    let mut response = Request::new("POST", "/api/notifications")
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send(&addr.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .read_to_end(Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(body)));
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["id"].as_u64())
        .ok_or_else(|| "201 without an id".to_owned())
}

async fn broadcast(addr: SocketAddr, index: u32) -> Result<(), String> {
    let body =
        serde_json::json!({ "title": format!("bc-{index}"), "message": now_micros().to_string() });
    let response = Request::new("POST", "/api/broadcasts")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send(&addr.to_string())
        .await
        .map_err(|e| e.to_string())?;
    match response.status() {
        201 => Ok(()),
        status => Err(format!("broadcast answered {status}")),
    }
}

/// Waits until the nodes are idle (together under a tenth of a core over
/// a second), at most `limit`: what connecting set off (presence news,
/// mirrors) is done before anything is timed. Returns the time it took.
async fn settle(nodes: &[Node], limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let before: f64 = nodes.iter().filter_map(Node::pid).map(cpu_seconds).sum();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after: f64 = nodes.iter().filter_map(Node::pid).map(cpu_seconds).sum();
        if after - before < 0.1 || started.elapsed() > limit {
            return started.elapsed();
        }
    }
}

/// A small, seeded generator: runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn quantiles(mut values: Vec<u32>) -> [u32; 4] {
    values.sort_unstable();
    [0.5, 0.99, 0.999, 1.0].map(|q| percentile(&values, q))
}

#[allow(clippy::too_many_lines)]
async fn run_engine(
    plan: &Plan,
    engine: &str,
    server: &std::path::Path,
) -> Result<EngineResult, String> {
    let store = sse_benches::fresh_postgres_url("many_nodes").await;
    let hub = match engine {
        "redis" => sse_benches::redis_url(),
        "postgres" => store.clone(),
        "nats" => sse_benches::nats_url(),
        other => {
            return Err(format!(
                "unknown engine {other:?}: use redis, postgres or nats"
            ));
        }
    };
    let log_dir =
        std::env::temp_dir().join(format!("sse-many-nodes-{}-{engine}", std::process::id()));
    std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
    let mut broker = if plan.faults {
        Some(faults::Broker::start(engine, plan.nodes, &store).await?)
    } else {
        None
    };
    let hubs = match &broker {
        Some(broker) => (0..plan.nodes).map(|k| broker.url(k)).collect(),
        None => Vec::new(),
    };
    let config = NodeConfig {
        server: server.to_owned(),
        store,
        hub,
        hubs,
        hub_prefix: format!("mn{}", std::process::id()),
        admin_token: ADMIN_TOKEN.to_owned(),
        log_dir: log_dir.clone(),
    };
    let mut nodes = Vec::new();
    for index in 0..plan.nodes {
        nodes.push(Node::new(index, free_port()?));
    }
    // The first node migrates the database; then the others start.
    nodes[0].start(&config).await?;
    for node in &mut nodes[1..] {
        node.start(&config).await?;
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let rss_before: Vec<u64> = nodes.iter().map(|n| n.pid().map_or(0, rss_kib)).collect();

    // Connect: one client process per node's worth of streams.
    let started = Instant::now();
    let users_per_client = plan.users() / plan.nodes as u32;
    let mut clients = Vec::new();
    for index in 0..plan.nodes {
        let first_user = index as u32 * users_per_client;
        let users = if index + 1 == plan.nodes {
            plan.users() - first_user
        } else {
            users_per_client
        };
        let nodes_arg: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        clients.push(ClientProc::spawn(&[
            "--nodes".into(),
            nodes_arg.join(","),
            "--first-user".into(),
            first_user.to_string(),
            "--users".into(),
            users.to_string(),
            "--tabs".into(),
            plan.tabs.to_string(),
            "--org-size".into(),
            plan.org_size.to_string(),
            "--index".into(),
            index.to_string(),
        ])?);
    }
    let clients = Arc::new(Mutex::new(clients));
    let total = plan.streams() as u64;
    loop {
        let (connected, ..) = totals(&clients).await?;
        if connected == total {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {connected} of {total} streams connected in 600 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_all_s = started.elapsed().as_secs_f64();
    eprintln!("{engine}: {total} streams connected in {connect_all_s:.1} s");
    // Let presence news and mirrors settle before reading memory.
    let settled = settle(&nodes, Duration::from_secs(120)).await;
    eprintln!("{engine}: nodes idle {:.1} s later", settled.as_secs_f64());
    let per_node = (total as f64 / plan.nodes as f64).max(1.0);
    let rss_per_stream_b: Vec<f64> = nodes
        .iter()
        .zip(&rss_before)
        .map(|(n, before)| {
            (n.pid().map_or(0, rss_kib).saturating_sub(*before) * 1024) as f64 / per_node
        })
        .collect();

    let sender = login(addrs[0], "sender").await?;
    let sent = Arc::new(std::sync::Mutex::new(Vec::<(u32, u64)>::new()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Targeted latency, one notification at a time, through a node that
    // holds none of the user's tabs where there is one.
    for i in 0..plan.latency_posts {
        let user = rng.below(u64::from(plan.users())) as u32;
        let via = addrs[first_node(user, plan.tabs, plan.tabs, plan.nodes)];
        let id = notify(via, &sender, user, &format!("lat-{i}")).await?;
        sent.lock().map_err(|e| e.to_string())?.push((user, id));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Everyone-broadcasts, each awaited at every stream.
    let cpu_before: Vec<f64> = nodes
        .iter()
        .map(|n| n.pid().map_or(0.0, cpu_seconds))
        .collect();
    let broker_name = match engine {
        "redis" => "redis-server",
        "nats" => "nats-server",
        _ => "postgres",
    };
    let broker_before = cpu_of_named(broker_name);
    let store_before = cpu_of_named("postgres");
    let (_, _, received_before) = totals(&clients).await?;
    for b in 0..plan.broadcasts {
        broadcast(addrs[b as usize % plan.nodes], b).await?;
        let want = received_before + total * u64::from(b + 1);
        let waiting = Instant::now();
        loop {
            let (_, _, received) = totals(&clients).await?;
            if received >= want {
                break;
            }
            if waiting.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "broadcast {b}: {received} of {want} deliveries in 60 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let broadcasts = f64::from(plan.broadcasts.max(1));
    let broadcast_cpu_per_delivery_us: Vec<f64> = nodes
        .iter()
        .zip(&cpu_before)
        .map(|(n, before)| {
            (n.pid().map_or(0.0, cpu_seconds) - before) * 1e6 / (per_node * broadcasts)
        })
        .collect();
    let broker_cpu_per_broadcast_ms =
        (cpu_of_named(broker_name) - broker_before) * 1e3 / broadcasts;
    let store_cpu_per_broadcast_ms = (cpu_of_named("postgres") - store_before) * 1e3 / broadcasts;

    // Restarts, with a sender notifying random users through the nodes
    // that are not cycling.
    let stable: Arc<Vec<AtomicBool>> =
        Arc::new((0..plan.nodes).map(|_| AtomicBool::new(true)).collect());
    let stop_sending = Arc::new(AtomicBool::new(false));
    let pause_sending = Arc::new(AtomicBool::new(false));
    let excluded = Arc::new(std::sync::Mutex::new(
        std::collections::HashSet::<u32>::new(),
    ));
    let send_task = {
        let (stable, stop, sent, addrs, sender) = (
            stable.clone(),
            stop_sending.clone(),
            sent.clone(),
            addrs.clone(),
            sender.clone(),
        );
        let (paused, excluded) = (pause_sending.clone(), excluded.clone());
        let users = plan.users();
        let every = Duration::from_secs_f64(1.0 / f64::from(plan.send_rate.max(1)));
        tokio::spawn(async move {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let (mut refused, mut ambiguous) = (0u64, 0u64);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let user = rng.below(u64::from(users)) as u32;
                let skip = excluded.lock().map(|e| e.contains(&user)).unwrap_or(false);
                if paused.load(Ordering::Relaxed) || skip {
                    continue;
                }
                // As a client would: a 503 (refused before anything was
                // stored, e.g. while a reconnect storm holds the session
                // store) is tried again; an answer that never came may or
                // may not have been stored, and is only counted.
                for _attempt in 0..50 {
                    let live: Vec<usize> = (0..addrs.len())
                        .filter(|&k| stable[k].load(Ordering::Relaxed))
                        .collect();
                    let via = addrs[live[rng.below(live.len() as u64) as usize]];
                    match notify(via, &sender, user, &format!("rr-{seq}")).await {
                        Ok(id) => {
                            if let Ok(mut sent) = sent.lock() {
                                sent.push((user, id));
                            }
                            break;
                        }
                        Err(e) if e.starts_with("503") => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            ambiguous += 1;
                            eprintln!(
                                "send via {via}: no answer ({e}); it may or may not be stored"
                            );
                            break;
                        }
                    }
                }
                seq += 1;
            }
            (refused, ambiguous)
        })
    };
    let mut restart = Vec::new();
    let mut kill = Vec::new();
    let mut fault_results = Vec::new();
    if let Some(broker) = &mut broker {
        let run = faults::FaultRun {
            plan,
            addrs: &addrs,
            clients: &clients,
            total,
            sent: &sent,
            sender: &sender,
            paused: &pause_sending,
            excluded: &excluded,
            log_dir: &log_dir,
        };
        for fault in faults::faults_of(engine) {
            let result = run.one(broker, fault).await?;
            eprintln!("{engine}: {result:?}");
            fault_results.push(result);
        }
    }
    let cycles = if plan.faults {
        vec![]
    } else {
        vec![true, false]
    };
    for graceful in cycles {
        for k in 0..plan.nodes {
            stable[k].store(false, Ordering::Relaxed);
            let (_, connects_before, _) = totals(&clients).await?;
            let t0 = Instant::now();
            if graceful {
                // The balancer takes the node out, then it is stopped.
                tell_all(&clients, &format!("down {k}")).await?;
                nodes[k].stop().await;
            } else {
                nodes[k].kill().await;
                tell_all(&clients, &format!("down {k}")).await?;
            }
            let stop_ms = t0.elapsed().as_millis() as u64;
            let mut cycle = Cycle {
                node: k,
                stop_ms,
                ..Cycle::default()
            };
            let (mut last_at, mut last_connects) = (Instant::now(), connects_before);
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (connected, connects, _) = totals(&clients).await?;
                let rate = (connects - last_connects) as f64 / last_at.elapsed().as_secs_f64();
                cycle.peak_connects_per_s = cycle.peak_connects_per_s.max(rate);
                (last_at, last_connects) = (Instant::now(), connects);
                if connected == total && connects > connects_before {
                    cycle.back_ms = Some(t0.elapsed().as_millis() as u64);
                    break;
                }
                if t0.elapsed() > Duration::from_secs(120) {
                    eprintln!("{engine}: node {k}: {connected} of {total} back after 120 s");
                    break;
                }
            }
            nodes[k].start(&config).await?;
            tell_all(&clients, &format!("up {k}")).await?;
            stable[k].store(true, Ordering::Relaxed);
            eprintln!(
                "{engine}: {} node {k}: down in {} ms, every stream back in {:?} ms, peak {:.0} connects/s",
                if graceful { "restarted" } else { "killed" },
                cycle.stop_ms,
                cycle.back_ms,
                cycle.peak_connects_per_s
            );
            if graceful {
                restart.push(cycle)
            } else {
                kill.push(cycle)
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    stop_sending.store(true, Ordering::Relaxed);
    let (send_refused, send_ambiguous) = send_task.await.map_err(|e| e.to_string())?;
    let sent = std::mem::take(&mut *sent.lock().map_err(|e| e.to_string())?);
    let sent_path = log_dir.join("sent.txt");
    let mut text = format!("{}\n", plan.broadcasts);
    for (user, id) in &sent {
        text.push_str(&format!("{user} {id}\n"));
    }
    std::fs::write(&sent_path, text).map_err(|e| e.to_string())?;
    let mut result = EngineResult {
        engine: engine.to_owned(),
        nodes: plan.nodes,
        streams: plan.streams(),
        connect_all_s,
        rss_per_stream_b,
        broadcast_cpu_per_delivery_us,
        broker_cpu_per_broadcast_ms,
        store_cpu_per_broadcast_ms,
        restart,
        kill,
        faults: fault_results,
        sent: sent.len(),
        send_refused,
        send_ambiguous,
        ..EngineResult::default()
    };
    // Verify once the nodes are idle, and again while anything is still
    // missing and arriving (deliveries queued behind a reconnect storm),
    // for at most a minute: lost is what never came.
    let stopped = Instant::now();
    settle(&nodes, Duration::from_secs(60)).await;
    let mut previous_lost = u64::MAX;
    let (targeted, broadcast_latency) = loop {
        let (mut targeted, mut broadcast_latency) = (Vec::new(), Vec::new());
        let mut totals = EngineResult::default();
        for client in clients.lock().await.iter_mut() {
            let v = client
                .ask(&format!("verify {}", sent_path.display()))
                .await?;
            let field = |name: &str| v[name].as_u64().unwrap_or(0);
            totals.expected += field("expected");
            totals.delivered += field("delivered");
            totals.lost += field("lost");
            totals.duplicated += field("duplicated");
            totals.out_of_order += field("out_of_order");
            totals.unexpected += field("unexpected");
            totals.leaked += field("leaked");
            totals.unauthorized += field("unauthorized");
            let samples = |name: &str| -> Vec<u32> {
                v[name]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect()
            };
            targeted.extend(samples("targeted_latency_us"));
            broadcast_latency.extend(samples("broadcast_latency_us"));
        }
        (
            result.expected,
            result.delivered,
            result.lost,
            result.duplicated,
        ) = (
            totals.expected,
            totals.delivered,
            totals.lost,
            totals.duplicated,
        );
        (
            result.out_of_order,
            result.unexpected,
            result.leaked,
            result.unauthorized,
        ) = (
            totals.out_of_order,
            totals.unexpected,
            totals.leaked,
            totals.unauthorized,
        );
        let progressing = totals.lost < previous_lost;
        previous_lost = totals.lost;
        if totals.lost == 0 || !progressing || stopped.elapsed() > Duration::from_secs(60) {
            break (targeted, broadcast_latency);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    result.settle_s = stopped.elapsed().as_secs_f64();
    result.targeted_us = quantiles(targeted);
    result.broadcast_us = quantiles(broadcast_latency);
    eprintln!(
        "{engine}: sent {} notifications + {} broadcasts; expected {} deliveries, delivered {}, lost {}, duplicated {}, out of order {}, leaked {}",
        result.sent,
        plan.broadcasts,
        result.expected,
        result.delivered,
        result.lost,
        result.duplicated,
        result.out_of_order,
        result.leaked
    );
    for client in clients.lock().await.iter_mut() {
        let _ = client.ask("quit").await;
    }
    for node in &mut nodes {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(result)
}

fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// The fault harness's table: engine by fault.
fn print_faults(results: &[EngineResult]) {
    if results.iter().all(|r| r.faults.is_empty()) {
        return;
    }
    println!(
        "| hub | fault | lasted | every stream back after | everything delivered after | lost | duplicated | out of order | leaked | revoked but streaming |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in results {
        for f in &r.faults {
            let back = f.streams_back_ms.map_or("not all".to_owned(), |ms| {
                format!("{:.1} s", ms as f64 / 1000.0)
            });
            println!(
                "| {} | {} | {:.1} s | {} | {:.1} s | {} | {} | {} | {} | {} |",
                r.engine,
                f.fault,
                f.lasted_ms as f64 / 1000.0,
                back,
                f.settled_ms as f64 / 1000.0,
                f.lost,
                f.duplicated,
                f.out_of_order,
                f.leaked,
                f.revoked_streaming
            );
        }
    }
    println!();
}

fn print_markdown(results: &[EngineResult]) {
    print_faults(results);
    println!(
        "| hub | streams | connect all | RSS per stream per node | targeted p50 / p99 / p99.9 / max | broadcast p50 / p99 / p99.9 / max | node CPU per broadcast delivery | broker CPU per broadcast |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in results {
        let rss: Vec<String> = r
            .rss_per_stream_b
            .iter()
            .map(|b| format!("{b:.0}"))
            .collect();
        let cpu: Vec<String> = r
            .broadcast_cpu_per_delivery_us
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect();
        let q = |v: &[u32; 4]| {
            format!(
                "{} / {} / {} / {} ms",
                ms(v[0]),
                ms(v[1]),
                ms(v[2]),
                ms(v[3])
            )
        };
        println!(
            "| {} | {} on {} nodes | {:.1} s | {} B | {} | {} | {} µs | {:.1} ms (store: {:.1} ms) |",
            r.engine,
            r.streams,
            r.nodes,
            r.connect_all_s,
            rss.join(" / "),
            q(&r.targeted_us),
            q(&r.broadcast_us),
            cpu.join(" / "),
            r.broker_cpu_per_broadcast_ms,
            r.store_cpu_per_broadcast_ms
        );
    }
    println!();
    println!(
        "| hub | sent | sends retried after 503 / unanswered | expected deliveries | delivered | lost | duplicated | out of order | leaked | restart: every stream back (max) | restart: peak connects/s | kill: every stream back (max) | kill: peak connects/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in results {
        let back = |cycles: &[Cycle]| {
            let slowest: Option<Option<u64>> = cycles
                .iter()
                .map(|c| c.back_ms)
                .reduce(|a, b| a.zip(b).map(|(a, b)| a.max(b)));
            match slowest {
                Some(Some(ms)) => format!("{:.1} s", ms as f64 / 1000.0),
                Some(None) => "not all".to_owned(),
                None => "—".to_owned(),
            }
        };
        let peak = |cycles: &[Cycle]| {
            cycles
                .iter()
                .map(|c| c.peak_connects_per_s)
                .fold(0.0, f64::max)
        };
        println!(
            "| {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} |",
            r.engine,
            r.sent,
            r.send_refused,
            r.send_ambiguous,
            r.expected,
            r.delivered,
            r.lost,
            r.duplicated,
            r.out_of_order,
            r.leaked,
            back(&r.restart),
            peak(&r.restart),
            back(&r.kill),
            peak(&r.kill)
        );
    }
}
