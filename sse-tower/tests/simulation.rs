//! The multi-node protocol (`sse_core::cluster`), simulated: several nodes,
//! each an `SseService` on a `ClusterHub`, over a broker that drops, delays,
//! reorders and duplicates messages, fails publishes and cuts links
//! (`sse_conformance::sim`), with clients that keep reconnecting with
//! their last id to any node, publishers on every node, and a node that
//! starts mid-run. Everything runs on one thread under tokio's paused
//! clock, every choice drawn from one seed.
//!
//! Each run checks, once the faults stop and the system settles: every
//! durable event each client should see arrived exactly once, in log
//! order, across all its reconnects; no event reached a client it was not
//! addressed to; a session revoked (from a node that may be cut off) ended
//! its open stream within a bound of the revocation reaching its node; and
//! once every client is gone, every node holds nothing for them (no
//! subscription, route or presence).
//!
//! `SIM_SEEDS=N` runs N seeds (default 1,000); `SIM_SEED=S` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use sse_conformance::parser::{Item, Parser};
use sse_conformance::sim::{Faults, Rng, SimBroker, SimTransport};
use sse_core::cluster::{ClusterHub, ClusterHubBuilder};
use sse_core::{
    Audience, AuthRejection, Event, EventLog, FnAuthenticator, Hub, InMemoryLog, Notifier,
    Principal,
};
use sse_tower::SseService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The principals clients connect as; ids as hostile as apps' inputs get
/// and `Principal::check_ids` lets through (CR, LF and NUL are refused at
/// connect: publishers still write to such audiences, below, and nobody
/// may receive those events).
fn principals() -> Vec<Principal> {
    vec![
        Principal::new("ada")
            .with_session("ada-1")
            .with_groups(["acme"]),
        Principal::new("ada")
            .with_session("ada-2")
            .with_groups(["acme"])
            .with_topics(["deploys"]),
        Principal::new("bob")
            .with_session("bob-1")
            .with_groups(["acme", "globex"]),
        Principal::new("x\tdata: évil %0A")
            .with_session("evil")
            .with_groups(["acme\t", "u:x"]),
        Principal::new("x")
            .with_session("x-1")
            .with_topics(["deploys"]),
        Principal::new("cy")
            .with_session("cy-1")
            .with_groups(["globex"])
            .with_topics(["u:x"]),
    ]
}

/// The audiences publishers write to.
fn audiences() -> Vec<Audience> {
    vec![
        Audience::user("ada"),
        Audience::user("bob"),
        Audience::user("x"),
        Audience::user("x\ndata: evil"),
        Audience::user("x\tdata: évil %0A"),
        Audience::user("nobody"),
        Audience::group("acme"),
        Audience::group("acme\n"),
        Audience::group("acme\t"),
        Audience::group("u:x"),
        Audience::group("globex"),
        Audience::topic("deploys"),
        Audience::topic("u:x"),
        Audience::Everyone,
    ]
}

type Shared<T> = Arc<Mutex<T>>;

struct World {
    broker: SimBroker,
    log: InMemoryLog,
    nodes: Shared<Vec<Node>>,
    rng: Shared<Rng>,
}

#[derive(Clone)]
struct Node {
    hub: ClusterHub<SimTransport>,
    sse: SseService,
}

/// What one client saw, over all its connections.
#[derive(Default)]
struct Record {
    /// Where its first stream started.
    start: Option<sse_core::Cursor>,
    /// Positions of the durable events it received, in order.
    durable: Vec<u64>,
    /// Ephemeral events it received that were not for it.
    strays: Vec<String>,
    resets: usize,
    connections: usize,
    /// When the server ended one of its streams.
    ended: Vec<tokio::time::Instant>,
}

async fn start_node(world: &World) -> Node {
    let hub = world
        .broker
        .node_with(
            ClusterHubBuilder::new()
                .hello_wait(Duration::from_millis(20))
                .presence_flush(Duration::from_millis(5))
                .announce_every(Duration::from_millis(200))
                .head_poll(Some(Duration::from_millis(500))),
        )
        .await;
    let table = principals();
    let auth = FnAuthenticator::new(move |parts: &http::request::Parts| {
        parts
            .headers
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .and_then(|i| table.get(i).cloned())
            .ok_or_else(|| AuthRejection::unauthenticated("no client"))
    });
    let sse = SseService::builder(auth)
        .notifier(&Notifier::new(
            Arc::new(world.log.clone()),
            Arc::new(hub.clone()),
        ))
        .heartbeat(Duration::from_secs(1))
        .queue_capacity(4_096)
        .build();
    Node { hub, sse }
}

/// The data of an ephemeral event: the audience it was sent to.
fn tag(audience: &Audience) -> String {
    format!("{audience:?}")
}

/// One client: connects to a node drawn at random, reads for a while,
/// drops the connection, comes back with its last id.
async fn client(
    world: Arc<World>,
    index: usize,
    record: Shared<Record>,
    hold: CancellationToken,
    stop: CancellationToken,
) {
    let principal = principals()[index].clone();
    let audiences = audiences();
    let mut last_id: Option<String> = None;
    loop {
        let (node, read_for) = {
            let nodes = world.nodes.lock().unwrap();
            let mut rng = world.rng.lock().unwrap();
            let node = nodes[rng.below(nodes.len() as u64) as usize].clone();
            // Once told to hold, a client keeps its stream: what it then
            // receives must come live, not from a replay on reconnect.
            let read_for = if hold.is_cancelled() {
                Duration::from_secs(3_600)
            } else {
                Duration::from_millis(200 + rng.below(3_000))
            };
            (node, read_for)
        };
        let mut request = Request::get("/events").header("x-client", index.to_string());
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id.as_str());
        }
        let response = node
            .sse
            .clone()
            .oneshot(request.body(http_body_util::Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        record.lock().unwrap().connections += 1;
        let mut body = std::pin::pin!(response.into_body());
        let mut parser = Parser::new();
        let deadline = tokio::time::sleep(read_for);
        tokio::pin!(deadline);
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        let done = loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = &mut deadline => break false,
                () = &mut stopped => break true,
            };
            let Some(Ok(frame)) = frame else {
                record
                    .lock()
                    .unwrap()
                    .ended
                    .push(tokio::time::Instant::now());
                break false;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for item in parser.feed(&data) {
                let Item::Event(event) = item else { continue };
                let mut record = record.lock().unwrap();
                match event.event_type.as_str() {
                    "connected" => {
                        if record.start.is_none() {
                            record.start = event.last_event_id.parse().ok();
                        }
                    }
                    "reset" => record.resets += 1,
                    "durable" => {
                        let cursor: sse_core::Cursor = event.last_event_id.parse().unwrap();
                        record.durable.push(cursor.position());
                    }
                    _ => {
                        // Ephemeral: its data names its audience.
                        let addressed = audiences
                            .iter()
                            .any(|a| tag(a) == event.data && a.matches(&principal));
                        if !addressed {
                            record.strays.push(event.data.clone());
                        }
                    }
                }
                last_id = Some(event.last_event_id.clone())
                    .filter(|id| !id.is_empty())
                    .or(last_id.take());
            }
        };
        if done {
            return;
        }
        let pause = Duration::from_millis(world.rng.lock().unwrap().below(300));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn publisher(world: Arc<World>, events: usize) {
    let audiences = audiences();
    for i in 0..events {
        let (node, audience, durable, pause) = {
            let nodes = world.nodes.lock().unwrap();
            let mut rng = world.rng.lock().unwrap();
            let node = nodes[rng.below(nodes.len() as u64) as usize].clone();
            let audience = audiences[rng.below(audiences.len() as u64) as usize].clone();
            (
                node,
                audience,
                rng.chance(0.7),
                Duration::from_millis(rng.below(40)),
            )
        };
        let notifier = node.sse.notifier();
        if durable {
            let event = Event::builder()
                .event("durable")
                .data(i.to_string())
                .build()
                .unwrap();
            // A failed publish after the append still counts: the event is
            // in the log, and must reach its streams.
            let _ = notifier.publish(&audience, &event).await;
        } else {
            let event = Event::builder()
                .event("ephemeral")
                .data(tag(&audience))
                .build()
                .unwrap();
            let _ = notifier.broadcast(&audience, &event).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Cuts and heals links now and then.
async fn chaos(world: Arc<World>, rounds: usize) {
    for _ in 0..rounds {
        let (node, down, up) = {
            let mut rng = world.rng.lock().unwrap();
            let nodes = world.broker.nodes() as u64;
            (
                rng.below(nodes) as usize,
                Duration::from_millis(100 + rng.below(1_500)),
                Duration::from_millis(200 + rng.below(1_500)),
            )
        };
        world.broker.cut(node);
        forge(&world).await;
        tokio::time::sleep(down).await;
        world.broker.heal(node);
        tokio::time::sleep(up).await;
    }
}

/// Puts on the broker what a forger with access to it could: a durable
/// event the log never wrote, at a position far beyond the log's head, and
/// one from another history, for a user clients read; and an event for one
/// user on another's channel. None of it may reach anyone, and no node may
/// skip a real event for it.
async fn forge(world: &World) {
    let head = world.log.head().await.unwrap();
    let cursor = head.epoch().at(head.position() + 1_000);
    let forged = Event::builder()
        .event("durable")
        .data("forged")
        .build()
        .unwrap()
        .with_cursor(cursor)
        .unwrap();
    let envelope = sse_core::cluster::Envelope::new(Audience::user("ada"), forged.clone());
    let durable = sse_core::cluster::Route::Durable;
    world.broker.inject(&durable, envelope.encode());
    // And one from another history.
    let other = sse_core::log::Epoch::random().at(3);
    let foreign = Event::builder()
        .event("durable")
        .data("foreign")
        .build()
        .unwrap();
    let foreign = sse_core::cluster::Envelope::new(
        Audience::user("ada"),
        foreign.with_cursor(other).unwrap(),
    );
    world.broker.inject(&durable, foreign.encode());
    // An event for bob on ada's channel: no one gets it.
    let to_bob = Event::builder()
        .event("ephemeral")
        .data(tag(&Audience::user("bob")))
        .build()
        .unwrap();
    let misrouted = sse_core::cluster::Envelope::new(Audience::user("bob"), to_bob);
    let ada = sse_core::cluster::Route::Audience(Audience::user("ada"));
    world.broker.inject(&ada, misrouted.encode());
}

/// How long after a revocation can reach a stream's node the stream ends.
const REVOCATION_BOUND: Duration = Duration::from_secs(3);

/// Revokes client 0's session from a node drawn at random (cut off or not).
async fn revoke(world: &World) -> tokio::time::Instant {
    let principal = principals()[0].clone();
    let node = {
        let nodes = world.nodes.lock().unwrap();
        let mut rng = world.rng.lock().unwrap();
        nodes[rng.below(nodes.len() as u64) as usize].clone()
    };
    let at = tokio::time::Instant::now();
    // Stored even when the live publish fails: the log carries it.
    let _ = node
        .sse
        .notifier()
        .revoke(principal.user(), principal.session())
        .await;
    at
}

/// One seeded run; `Err` says what broke.
async fn run(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let faults = Faults {
        drop: 0.02 + rng.below(8) as f64 / 100.0,
        duplicate: rng.below(5) as f64 / 100.0,
        max_delay: Duration::from_millis(rng.below(50)),
        publish_failure: rng.below(5) as f64 / 100.0,
        report_drop: 0.5,
    };
    let world = Arc::new(World {
        broker: SimBroker::new(seed, faults),
        log: InMemoryLog::new(),
        nodes: Arc::default(),
        rng: Arc::new(Mutex::new(rng)),
    });
    for _ in 0..2 {
        let node = start_node(&world).await;
        world.nodes.lock().unwrap().push(node);
    }
    let (hold, stop) = (CancellationToken::new(), CancellationToken::new());
    let records: Vec<Shared<Record>> = (0..principals().len()).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (index, record) in records.iter().enumerate() {
        clients.push(tokio::spawn(client(
            world.clone(),
            index,
            record.clone(),
            hold.clone(),
            stop.clone(),
        )));
    }
    // Churn: clients come and go, publishers publish, links are cut.
    let publishing = tokio::spawn(publisher(world.clone(), 100));
    let cutting = tokio::spawn(chaos(world.clone(), 2));
    // A node joins mid-run; clients and publishers use it from then on.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = start_node(&world).await;
    world.nodes.lock().unwrap().push(late);
    publishing.await.map_err(|e| e.to_string())?;
    cutting.await.map_err(|e| e.to_string())?;
    // Clients hold their streams; more is published, links are cut again:
    // what is lost now can reach a client only through the protocol.
    hold.cancel();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let publishing = tokio::spawn(publisher(world.clone(), 60));
    let cutting = tokio::spawn(chaos(world.clone(), 2));
    // Logout of client 0's session, from a node that may be cut off: its
    // held stream must end once the revocation can reach its node.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked_at = revoke(&world).await;
    publishing.await.map_err(|e| e.to_string())?;
    cutting.await.map_err(|e| e.to_string())?;
    // Faults stop; every link is healed; the system settles.
    world.broker.set_faults(Faults::none());
    for node in 0..world.broker.nodes() {
        world.broker.heal(node);
    }
    let healed = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ended = records[0].lock().unwrap().ended.clone();
    let bound = healed.max(revoked_at) + REVOCATION_BOUND;
    if !ended.iter().any(|at| *at >= revoked_at && *at <= bound) {
        return Err(format!(
            "client 0's session was revoked and its stream did not end within {REVOCATION_BOUND:?} of the revocation reaching its node (ends at {:?} after it)",
            ended
                .iter()
                .map(|at| at.saturating_duration_since(revoked_at))
                .collect::<Vec<_>>()
        ));
    }
    stop.cancel();
    for client in clients {
        client.await.map_err(|e| e.to_string())?;
    }
    check(&world, &records).await?;
    if std::env::var_os("SIM_VERBOSE").is_some() {
        let (deliveries, dropped) = world.broker.counts();
        let head = world.log.head().await.map_err(|e| e.to_string())?;
        let seen: Vec<String> = records
            .iter()
            .map(|r| {
                let r = r.lock().unwrap();
                format!("{}/{}c", r.durable.len(), r.connections)
            })
            .collect();
        eprintln!(
            "seed {seed}: {} durable in the log, {deliveries} deliveries ({dropped} dropped), clients {seen:?}",
            head.position()
        );
    }
    // Every client gone: nothing is left for them on any node.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes = world.nodes.lock().unwrap().clone();
    for (n, node) in nodes.iter().enumerate() {
        let local = node.hub.local();
        if local.index_entries() != 0 || node.hub.routes() != 0 {
            return Err(format!(
                "node {n} still holds {} index entries and {} routes after every stream closed",
                local.index_entries(),
                node.hub.routes()
            ));
        }
        let everyone = node
            .hub
            .presence(&Audience::Everyone)
            .await
            .map_err(|e| e.to_string())?;
        if everyone.streams != 0 {
            return Err(format!(
                "node {n} still counts {} streams online",
                everyone.streams
            ));
        }
    }
    Ok(())
}

/// Every client's durable events against the log.
async fn check(world: &World, records: &[Shared<Record>]) -> Result<(), String> {
    let head = world.log.head().await.map_err(|e| e.to_string())?;
    let all = world
        .log
        .read(head.epoch().at(0), 100_000)
        .await
        .map_err(|e| e.to_string())?;
    let by_position: HashMap<u64, &sse_core::log::LogRecord> = all
        .iter()
        .filter_map(|r| r.cursor().map(|c| (c.position(), r)))
        .collect();
    for (index, (record, principal)) in records.iter().zip(principals()).enumerate() {
        let record = record.lock().unwrap();
        let who = format!("client {index} ({:?})", principal.user());
        if !record.strays.is_empty() {
            return Err(format!(
                "{who} received events addressed to others: {:?}",
                record.strays
            ));
        }
        if record.resets > 0 {
            return Err(format!("{who} was told to reset {} times", record.resets));
        }
        let Some(start) = record.start else {
            return Err(format!("{who} never connected"));
        };
        let expected: Vec<u64> = all
            .iter()
            .filter(|r| r.audience.matches(&principal) && r.event.revocation().is_none())
            .filter_map(|r| r.cursor().map(|c| c.position()))
            .filter(|position| *position > start.position())
            .collect();
        if record.durable != expected {
            let missing: Vec<u64> = expected
                .iter()
                .filter(|p| !record.durable.contains(p))
                .copied()
                .collect();
            let extra: Vec<String> = record
                .durable
                .iter()
                .filter(|p| !expected.contains(p))
                .map(|p| format!("{p} ({:?})", by_position.get(p).map(|r| &r.audience)))
                .collect();
            let mut sorted = record.durable.clone();
            sorted.dedup();
            let repeated = sorted.len() != record.durable.len();
            let ordered = record.durable.windows(2).all(|w| w[0] < w[1]);
            return Err(format!(
                "{who}, {} connections: missing {missing:?}, not addressed to it {extra:?}, repeated {repeated}, in order {ordered}",
                record.connections
            ));
        }
    }
    Ok(())
}

/// Far more simulated time than a run takes (about 20 s).
const RUN_BOUND: Duration = Duration::from_secs(600);

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000u64);
    (1..=count).collect()
}

#[test]
fn the_protocol_loses_leaks_and_keeps_nothing_under_faults() {
    let mut failures = Vec::new();
    for seed in seeds() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        // Simulated time: a run that cannot settle (a client that never
        // connects) fails its seed instead of spinning forever.
        let bounded = async {
            tokio::time::timeout(RUN_BOUND, run(seed))
                .await
                .unwrap_or_else(|_| Err(format!("not settled after {RUN_BOUND:?} simulated")))
        };
        if let Err(why) = runtime.block_on(bounded) {
            failures.push(format!("seed {seed}: {why}"));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "replay one with SIM_SEED=<seed>:\n{}",
        failures.join("\n")
    );
}
