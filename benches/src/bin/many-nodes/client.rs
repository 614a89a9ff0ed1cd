//! One load-client process: logs its users in, holds their streams like
//! browser tabs do (reconnecting with `Last-Event-ID` to the least-loaded
//! live node, as a least-connections balancer would send them), and
//! answers the orchestrator's commands on stdin with one JSON line each.
//!
//! Commands: `stats`, `down K`, `up K`, `logout USER_INDEX` (the user's
//! session is logged out at a live node; its tabs must end, and stop on
//! the `401` of their reconnect), `verify PATH` (then `PATH` holds one
//! `USER_INDEX NOTIFICATION_ID` line per notification sent, and the first
//! line is the number of broadcasts) and `quit`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sse_conformance::client::Request;
use sse_conformance::parser::{Item, Parser};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::{ChunkedDecoder, now_micros};

/// What the orchestrator tells a client process to hold.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// The nodes, `HOST:PORT` comma-separated, in node order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) nodes: Vec<SocketAddr>,
    /// The first user index this process holds.
    #[arg(long)]
    pub(crate) first_user: u32,
    /// How many users this process holds.
    #[arg(long)]
    pub(crate) users: u32,
    /// Streams (tabs) per user.
    #[arg(long)]
    pub(crate) tabs: u32,
    /// Users per org (presence news goes to the org).
    #[arg(long)]
    pub(crate) org_size: u32,
    /// This process's index: its source addresses are `127.<1+index>.*.1`.
    #[arg(long)]
    pub(crate) index: u8,
}

/// What one stream (tab) saw, in arrival order.
#[derive(Default)]
struct Seen {
    notifications: Vec<u64>,
    broadcasts: Vec<u32>,
    leaked: u64,
}

struct Tab {
    user: u32,
    seen: Mutex<Seen>,
    /// Whether it holds an open stream now.
    streaming: AtomicBool,
}

struct Shared {
    args: ClientArgs,
    live: Vec<AtomicBool>,
    /// Streams this process has on (or is connecting to) each node.
    load: Vec<AtomicUsize>,
    connected: AtomicUsize,
    connects: AtomicU64,
    refusals: AtomicU64,
    unauthorized: AtomicU64,
    broadcasts: AtomicU64,
    targeted_latency_us: Mutex<Vec<u32>>,
    broadcast_latency_us: Mutex<Vec<u32>>,
    /// Each user's session cookie.
    cookies: Mutex<HashMap<u32, Arc<str>>>,
    /// Users logged out: their tabs stop once refused.
    logged_out: Mutex<HashSet<u32>>,
}

/// A poisoned lock still holds what was recorded: a panicking tab task
/// must not hide the other tabs' records.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn user_name(index: u32) -> String {
    format!("u{index}")
}

/// The node a tab first connects to: each user's tabs on different nodes.
pub(crate) fn first_node(user: u32, tab: u32, tabs: u32, nodes: usize) -> usize {
    (user as usize * tabs as usize + tab as usize) % nodes
}

pub(crate) async fn run(args: ClientArgs) {
    let nodes = args.nodes.len();
    let shared = Arc::new(Shared {
        live: (0..nodes).map(|_| AtomicBool::new(true)).collect(),
        load: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
        connected: AtomicUsize::new(0),
        connects: AtomicU64::new(0),
        refusals: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
        broadcasts: AtomicU64::new(0),
        targeted_latency_us: Mutex::new(Vec::new()),
        broadcast_latency_us: Mutex::new(Vec::new()),
        cookies: Mutex::new(HashMap::new()),
        logged_out: Mutex::new(HashSet::new()),
        args,
    });
    let cookies = login_all(&shared).await;
    let mut tabs = Vec::new();
    for (offset, cookie) in cookies.into_iter().enumerate() {
        let user = shared.args.first_user + offset as u32;
        let cookie: Arc<str> = cookie.into();
        lock(&shared.cookies).insert(user, cookie.clone());
        for tab in 0..shared.args.tabs {
            let state = Arc::new(Tab {
                user,
                seen: Mutex::new(Seen::default()),
                streaming: AtomicBool::new(false),
            });
            tabs.push(state.clone());
            let node = first_node(user, tab, shared.args.tabs, nodes);
            let source = Ipv4Addr::new(127, 1 + shared.args.index, (tabs.len() % 64) as u8, 1);
            tokio::spawn(hold(shared.clone(), state, cookie.clone(), node, source));
        }
    }
    commands(shared, tabs).await;
}

/// Logs every user in (32 at a time), each at its first tab's node.
async fn login_all(shared: &Arc<Shared>) -> Vec<String> {
    let args = &shared.args;
    let users: Vec<u32> = (args.first_user..args.first_user + args.users).collect();
    let mut cookies = vec![String::new(); users.len()];
    for (batch_index, batch) in users.chunks(32).enumerate() {
        let mut logins = Vec::new();
        for &user in batch {
            let node = args.nodes[first_node(user, 0, args.tabs, args.nodes.len())];
            let body = serde_json::json!({
                "user": user_name(user),
                "org": format!("o{}", user / args.org_size),
            });
            logins.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let request = Request::new("POST", "/api/login")
                        .header("content-type", "application/json")
                        .body(body.to_string());
                    if let Ok(response) = request.send(&node.to_string()).await
                        && response.status() == 204
                        && let Some(cookie) = response.header("set-cookie")
                    {
                        return Ok(cookie.split(';').next().unwrap_or_default().to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(format!("user {user} could not log in at {node}"))
            }));
        }
        for (i, login) in logins.into_iter().enumerate() {
            match login.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(cookie) => cookies[batch_index * 32 + i] = cookie,
                Err(why) => {
                    eprintln!("load client: {why}");
                    std::process::exit(1);
                }
            }
        }
    }
    cookies
}

/// The least-loaded live node: where a least-connections balancer sends a
/// reconnecting tab. Counted at choice time so a herd spreads at once.
fn choose(shared: &Shared, avoid: Option<usize>) -> usize {
    let nodes = shared.load.len();
    let start = (now_micros() as usize) % nodes;
    let mut best = None;
    for step in 0..nodes {
        let node = (start + step) % nodes;
        if (avoid == Some(node) && nodes > 1) || !shared.live[node].load(Ordering::Relaxed) {
            continue;
        }
        let load = shared.load[node].load(Ordering::Relaxed);
        if best.is_none_or(|(_, l)| load < l) {
            best = Some((node, load));
        }
    }
    let node = best.map_or(avoid.map_or(0, |a| (a + 1) % nodes), |(node, _)| node);
    shared.load[node].fetch_add(1, Ordering::Relaxed);
    node
}

/// One tab: connects, reads until the stream ends, reconnects with the
/// last id it saw after the server's `retry:` (jittered) or a backoff.
async fn hold(
    shared: Arc<Shared>,
    tab: Arc<Tab>,
    cookie: Arc<str>,
    first: usize,
    source: Ipv4Addr,
) {
    shared.load[first].fetch_add(1, Ordering::Relaxed);
    let mut node = first;
    let mut last_event_id = String::new();
    let mut retry_ms = 1_000u64;
    let mut failures = 0u32;
    let mut told_to_wait = None;
    loop {
        let addr = shared.args.nodes[node];
        match open(addr, source, &cookie, &last_event_id).await {
            Ok((200, _, mut socket, rest)) => {
                failures = 0;
                tab.streaming.store(true, Ordering::Relaxed);
                shared.connected.fetch_add(1, Ordering::Relaxed);
                shared.connects.fetch_add(1, Ordering::Relaxed);
                read(
                    &shared,
                    &tab,
                    &mut socket,
                    rest,
                    &mut last_event_id,
                    &mut retry_ms,
                )
                .await;
                tab.streaming.store(false, Ordering::Relaxed);
                shared.connected.fetch_sub(1, Ordering::Relaxed);
            }
            Ok((status, retry_after, ..)) => {
                if status == 401 {
                    shared.unauthorized.fetch_add(1, Ordering::Relaxed);
                    if lock(&shared.logged_out).contains(&tab.user) {
                        // Logged out, as a browser tab shows its login.
                        shared.load[node].fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                }
                shared.refusals.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                // A busy node's `Retry-After` (503, 429), jittered.
                told_to_wait = retry_after.map(|secs| secs * 1_000);
            }
            Err(_) => {
                shared.refusals.fetch_add(1, Ordering::Relaxed);
                failures += 1;
            }
        }
        shared.load[node].fetch_sub(1, Ordering::Relaxed);
        // As EventSource: after a stream ends, wait the server's `retry:`
        // (at shutdown the server jitters it to spread the herd); after a
        // failed attempt, back off with jitter.
        let wait = if failures == 0 {
            retry_ms
        } else if let Some(ms) = told_to_wait.take() {
            ms / 2 + now_micros() % ms.max(1)
        } else {
            let base = (100u64 << failures.min(5)).min(3_000);
            base / 2 + now_micros() % (base / 2)
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        node = choose(&shared, (failures > 0).then_some(node));
    }
}

/// Sends the stream request; returns the status, the socket and the body
/// bytes that came with the head.
async fn open(
    addr: SocketAddr,
    source: Ipv4Addr,
    cookie: &str,
    last_event_id: &str,
) -> std::io::Result<(u16, Option<u64>, TcpStream, Vec<u8>)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    let resume = if last_event_id.is_empty() {
        String::new()
    } else {
        format!("last-event-id: {last_event_id}\r\n")
    };
    let request = format!(
        "GET /api/notifications/stream HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\ncookie: {cookie}\r\n{resume}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    let read_head = async {
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed before the response head"));
            }
            head.extend_from_slice(&buffer[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&head) {
                Ok(httparse::Status::Complete(len)) => {
                    let retry_after = response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
                    return Ok((response.code.unwrap_or(0), retry_after, len));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    };
    let (status, retry_after, len) = tokio::time::timeout(Duration::from_secs(30), read_head)
        .await
        .map_err(|_| std::io::Error::other("no response head in 30 s"))??;
    let rest = head.split_off(len);
    Ok((status, retry_after, stream, rest))
}

#[derive(Deserialize)]
struct ChangeData {
    notification: Option<NotificationData>,
}

#[derive(Deserialize)]
struct NotificationData {
    id: u64,
    user: String,
    title: String,
    #[serde(default)]
    data: Option<Stamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stamp {
    sent_at: u64,
}

#[derive(Deserialize)]
struct BroadcastData {
    title: String,
    message: String,
}

async fn read(
    shared: &Shared,
    tab: &Tab,
    socket: &mut TcpStream,
    rest: Vec<u8>,
    last_event_id: &mut String,
    retry_ms: &mut u64,
) {
    let mut decoder = ChunkedDecoder::default();
    let mut parser = Parser::new();
    let mut decoded = Vec::new();
    let mut items = Vec::new();
    let mut buffer = vec![0u8; 4096];
    let mut bytes = rest;
    let own = user_name(tab.user);
    loop {
        decoded.clear();
        if decoder.decode(&bytes, &mut decoded).is_err() {
            return;
        }
        parser.feed_into(&decoded, &mut items);
        for item in items.drain(..) {
            match item {
                Item::Retry(ms) => *retry_ms = ms,
                Item::Event(event) => {
                    if !event.last_event_id.is_empty() {
                        last_event_id.clone_from(&event.last_event_id);
                    }
                    on_event(shared, tab, &own, &event.event_type, &event.data);
                }
                _ => {}
            }
        }
        if decoder.done() {
            return;
        }
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = buffer[..n].to_vec(),
        }
    }
}

fn on_event(shared: &Shared, tab: &Tab, own: &str, event_type: &str, data: &str) {
    let now = now_micros();
    match event_type {
        "notification" => {
            let Some(n) = serde_json::from_str::<ChangeData>(data)
                .ok()
                .and_then(|c| c.notification)
            else {
                return;
            };
            let mut seen = lock(&tab.seen);
            if n.user != own {
                seen.leaked += 1;
                return;
            }
            seen.notifications.push(n.id);
            drop(seen);
            if n.title.starts_with("lat-")
                && let Some(stamp) = n.data
            {
                let us = now.saturating_sub(stamp.sent_at).min(u64::from(u32::MAX)) as u32;
                lock(&shared.targeted_latency_us).push(us);
            }
        }
        "broadcast" => {
            let Ok(b) = serde_json::from_str::<BroadcastData>(data) else {
                return;
            };
            let Some(index) = b.title.strip_prefix("bc-").and_then(|i| i.parse().ok()) else {
                return;
            };
            lock(&tab.seen).broadcasts.push(index);
            shared.broadcasts.fetch_add(1, Ordering::Relaxed);
            if let Ok(sent_at) = b.message.parse::<u64>() {
                let us = now.saturating_sub(sent_at).min(u64::from(u32::MAX)) as u32;
                lock(&shared.broadcast_latency_us).push(us);
            }
        }
        _ => {}
    }
}

async fn commands(shared: Arc<Shared>, tabs: Vec<Arc<Tab>>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match command {
            "stats" => serde_json::json!({
                "connected": shared.connected.load(Ordering::Relaxed),
                "connects": shared.connects.load(Ordering::Relaxed),
                "refusals": shared.refusals.load(Ordering::Relaxed),
                "unauthorized": shared.unauthorized.load(Ordering::Relaxed),
                "broadcasts": shared.broadcasts.load(Ordering::Relaxed),
                "load": shared.load.iter().map(|l| l.load(Ordering::Relaxed)).collect::<Vec<_>>(),
                "logged_out_streaming": logged_out_streaming(&shared, &tabs),
            }),
            "down" | "up" => {
                if let Some(live) = argument
                    .parse::<usize>()
                    .ok()
                    .and_then(|k| shared.live.get(k))
                {
                    live.store(command == "up", Ordering::Relaxed);
                }
                serde_json::json!({"ok": true})
            }
            "logout" => logout(&shared, argument).await,
            "verify" => verify(&shared, &tabs, argument),
            "quit" => break,
            _ => serde_json::json!({"error": format!("unknown command {command:?}")}),
        };
        let mut text = answer.to_string();
        text.push('\n');
        if stdout.write_all(text.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
            break;
        }
    }
}

/// Tabs of logged-out users that still hold a stream.
fn logged_out_streaming(shared: &Shared, tabs: &[Arc<Tab>]) -> usize {
    let out = lock(&shared.logged_out).clone();
    tabs.iter()
        .filter(|t| out.contains(&t.user) && t.streaming.load(Ordering::Relaxed))
        .count()
}

/// Logs `user` out at a live node (the session is removed and revoked on
/// every node); the answer carries the status.
async fn logout(shared: &Shared, user: &str) -> serde_json::Value {
    let Ok(user) = user.parse::<u32>() else {
        return serde_json::json!({"error": "logout takes a user index"});
    };
    let Some(cookie) = lock(&shared.cookies).get(&user).cloned() else {
        return serde_json::json!({"error": "not a user of this client"});
    };
    lock(&shared.logged_out).insert(user);
    let live = (0..shared.live.len()).find(|&k| shared.live[k].load(Ordering::Relaxed));
    let node = shared.args.nodes[live.unwrap_or(0)];
    let status = Request::new("POST", "/api/logout")
        .header("cookie", &*cookie)
        .header("origin", format!("http://{node}"))
        .send(&node.to_string())
        .await
        .map_or(0, |response| response.status());
    serde_json::json!({"status": status})
}

/// Compares what each tab saw with what was sent: lost, duplicated, out
/// of order, leaked; plus every latency sample.
fn verify(shared: &Shared, tabs: &[Arc<Tab>], path: &str) -> serde_json::Value {
    let Ok(text) = std::fs::read_to_string(path) else {
        return serde_json::json!({"error": format!("cannot read {path}")});
    };
    let mut lines = text.lines();
    let broadcasts: u32 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut sent: HashMap<u32, Vec<u64>> = HashMap::new();
    for line in lines {
        if let Some((user, id)) = line.split_once(' ')
            && let (Ok(user), Ok(id)) = (user.parse(), id.parse())
        {
            sent.entry(user).or_default().push(id);
        }
    }
    let (mut expected, mut delivered, mut lost, mut duplicated) = (0u64, 0u64, 0u64, 0u64);
    let (mut out_of_order, mut unexpected, mut leaked) = (0u64, 0u64, 0u64);
    for tab in tabs {
        let seen = lock(&tab.seen);
        leaked += seen.leaked;
        let want: HashSet<u64> = sent.get(&tab.user).into_iter().flatten().copied().collect();
        let got: HashSet<u64> = seen.notifications.iter().copied().collect();
        expected += want.len() as u64 + u64::from(broadcasts);
        delivered += seen.notifications.len() as u64 + seen.broadcasts.len() as u64;
        lost += want.difference(&got).count() as u64;
        unexpected += got.difference(&want).count() as u64;
        duplicated += (seen.notifications.len() - got.len()) as u64;
        out_of_order += seen
            .notifications
            .windows(2)
            .filter(|w| w[1] <= w[0])
            .count() as u64;
        let bc: HashSet<u32> = seen.broadcasts.iter().copied().collect();
        lost += (0..broadcasts).filter(|b| !bc.contains(b)).count() as u64;
        duplicated += (seen.broadcasts.len() - bc.len()) as u64;
        out_of_order += seen.broadcasts.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    }
    serde_json::json!({
        "streams": tabs.len(),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
        "leaked": leaked,
        "unauthorized": shared.unauthorized.load(Ordering::Relaxed),
        "targeted_latency_us": *lock(&shared.targeted_latency_us),
        "broadcast_latency_us": *lock(&shared.broadcast_latency_us),
    })
}
