//! The servers the load generator compares, one per process:
//!
//! - `ours`: an axum `Router` with `SseService` (in-memory hub and store),
//!   served by `sse_tower::serve` (what `sse_axum::serve` runs): event
//!   streams written directly to their sockets;
//! - `ours-axum`: the same served by `axum::serve` (hyper's defaults);
//! - `ours-hyper`: the same served by `sse_tower::serve` with streams
//!   through hyper, tuned as far as hyper goes (HTTP/1.1 only, 8 KiB read
//!   buffers);
//! - `ours-tls`: `ours` over TLS (the test certificate of
//!   `sse-tower/tests/tls/`, for `localhost`), HTTP/2 and HTTP/1.1 by ALPN;
//!   `ours-tls-8k` with read buffers capped at 8 KiB;
//! - `broadcast`: what users write with plain axum — `Sse` over a
//!   `tokio::sync::broadcast` channel, each client filtering for its user;
//! - `map`: the seeds' connection manager — `Mutex<HashMap<user,
//!   Vec<Sender>>>` with axum `Sse` per client;
//! - `raw`: the floor — a TCP server (no HTTP, no hub) writing the same
//!   pre-encoded bytes to sockets, everything ready in one write;
//! - `nchan`: a real peer, nginx with the nchan module (Debian's
//!   `nginx-light` and `libnginx-mod-nchan`), one process, each stream
//!   subscribed to its user's channel and `all`; this process only
//!   translates the control calls into nchan publishes. The ready line
//!   then names nginx's pid as a third field: measure that process.
//!
//! `bench-server MODE STREAM_ADDR CONTROL_ADDR`. Clients connect to
//! STREAM_ADDR: `GET /events?user=U` (HTTP modes), or the line `U\n`
//! (`raw`). The load generator drives CONTROL_ADDR:
//! `POST /user/U` publishes one event to U, `POST /all?n=K` publishes K
//! events to everyone, `POST /seed?users=U&events=M` (answering the log
//! position before it) stores M
//! notifications for each of U users (`ours` only). Every published event
//! carries `t=<unix nanos at the publish call>` as its data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Built with `--features jemalloc` or `--features mimalloc` to measure the
// allocator's share (BENCHMARKS.md, "Memory per idle connection").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as AxumEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use sse_core::{
    Audience, AuthRejection, Event, FnAuthenticator, InMemoryHub, InMemoryStore, NewNotification,
    NotificationStore, Principal,
};
use sse_tower::SseService;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn stamp() -> String {
    format!("t={}", now_nanos())
}

#[derive(Deserialize)]
struct Count {
    n: Option<usize>,
}

#[derive(Deserialize)]
struct UserQuery {
    user: String,
}

#[derive(Deserialize)]
struct Seed {
    users: usize,
    events: usize,
}

/// How each mode publishes; the control endpoints call these.
trait Publisher: Send + Sync + 'static {
    fn to_user(&self, user: &str);
    fn to_all(&self);
}

fn control(publisher: Arc<dyn Publisher>, store: Option<InMemoryStore>) -> Router {
    let to_user = publisher.clone();
    Router::new()
        .route(
            "/user/{user}",
            post(move |Path(user): Path<String>| async move {
                to_user.to_user(&user);
            }),
        )
        .route(
            "/all",
            post(move |Query(count): Query<Count>| async move {
                for _ in 0..count.n.unwrap_or(1) {
                    publisher.to_all();
                }
            }),
        )
        .route(
            "/seed",
            post(move |Query(seed): Query<Seed>| async move {
                let Some(store) = store else {
                    return "no store in this mode".to_owned();
                };
                let start = sse_core::EventLog::head(&store).await.unwrap();
                for u in 0..seed.users {
                    for e in 0..seed.events {
                        store
                            .create(NewNotification::new(format!("u{u}"), format!("n{e}")))
                            .await
                            .unwrap();
                    }
                }
                start.to_string()
            }),
        )
}

// ---- ours -------------------------------------------------------------

struct OursPublisher(InMemoryHub);

impl Publisher for OursPublisher {
    fn to_user(&self, user: &str) {
        let event = Event::builder().data(stamp()).build().unwrap();
        self.0.deliver(&Audience::user(user), &event);
    }

    fn to_all(&self) {
        // Encoded once; every connection gets the same bytes.
        let event = Event::builder().data(stamp()).build().unwrap();
        self.0.deliver(&Audience::Everyone, &event);
    }
}

/// How `ours` is served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// `sse_tower::serve` with its defaults.
    Serve,
    /// `axum::serve`, hyper's defaults.
    Axum,
    /// `sse_tower::serve`, streams through hyper, HTTP/1.1 only, read
    /// buffers at their 8 KiB floor.
    Hyper,
    /// `sse_tower::serve` over TLS with its test certificate, read
    /// buffers capped at this many bytes.
    Tls(Option<usize>),
}

async fn ours(stream: TcpListener, control_listener: TcpListener, serving: Serving) {
    let hub = InMemoryHub::new();
    let store = InMemoryStore::new();
    let auth = FnAuthenticator::new(|parts| {
        parts
            .uri
            .query()
            .and_then(|q| sse_core::query::param(q, "user"))
            .map(Principal::new)
            .ok_or_else(|| AuthRejection::unauthenticated("no user"))
    });
    let sse = SseService::builder(auth)
        .hub(hub.clone())
        .store(store.clone())
        .heartbeat(Duration::from_secs(60))
        .max_connections_per_user(usize::MAX)
        .max_connections(1_000_000)
        .queue_capacity(1024)
        .replay_limit(100_000)
        .build();
    let app = Router::new().route_service("/events", sse);
    tokio::spawn(serve_control(
        control_listener,
        control(Arc::new(OursPublisher(hub)), Some(store)),
    ));
    match serving {
        Serving::Serve => sse_tower::serve(stream, app)
            .max_connections(1_000_000)
            .await
            .unwrap(),
        Serving::Axum => axum::serve(stream, app).await.unwrap(),
        Serving::Tls(read_buffer) => {
            let tls = sse_tower::serve::Tls::from_pem(
                include_bytes!("../../../sse-tower/tests/tls/first.cert.pem"),
                include_bytes!("../../../sse-tower/tests/tls/first.key.pem"),
            )
            .unwrap();
            let server = sse_tower::serve(stream, app)
                .max_connections(1_000_000)
                .tls(tls);
            match read_buffer {
                Some(bytes) => server.max_read_buffer(bytes).await.unwrap(),
                None => server.await.unwrap(),
            }
        }
        Serving::Hyper => sse_tower::serve(stream, app)
            .max_connections(1_000_000)
            .http1_only()
            .max_read_buffer(8 * 1024)
            .streams_through_hyper()
            .await
            .unwrap(),
    }
}

// ---- broadcast: plain axum Sse + tokio::sync::broadcast ---------------

/// (target user, or everyone; data) as the plain version would send it.
type Message = (Option<Arc<str>>, Arc<str>);

struct BroadcastPublisher(broadcast::Sender<Message>);

impl Publisher for BroadcastPublisher {
    fn to_user(&self, user: &str) {
        let _ = self.0.send((Some(user.into()), stamp().into()));
    }

    fn to_all(&self) {
        let _ = self.0.send((None, stamp().into()));
    }
}

async fn broadcast_events(
    State(tx): State<broadcast::Sender<Message>>,
    Query(query): Query<UserQuery>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    let user: Arc<str> = query.user.into();
    let stream =
        tokio_stream::wrappers::BroadcastStream::new(tx.subscribe()).filter_map(move |message| {
            let user = user.clone();
            async move {
                match message {
                    Ok((target, data)) if target.as_deref().is_none_or(|t| t == &*user) => {
                        Some(Ok(AxumEvent::default().data(&*data)))
                    }
                    _ => None,
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(60)))
}

async fn broadcast_mode(stream: TcpListener, control_listener: TcpListener) {
    let (tx, _) = broadcast::channel(1024);
    let app = Router::new()
        .route("/events", get(broadcast_events))
        .with_state(tx.clone());
    tokio::spawn(serve_control(
        control_listener,
        control(Arc::new(BroadcastPublisher(tx)), None),
    ));
    axum::serve(stream, app).await.unwrap();
}

// ---- map: the seeds' Mutex<HashMap<user, Vec<Sender>>> manager ---------

type Clients = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Arc<str>>)>>>>;

struct MapPublisher(Clients);

impl Publisher for MapPublisher {
    fn to_user(&self, user: &str) {
        let data: Arc<str> = stamp().into();
        if let Some(senders) = self.0.lock().unwrap().get(user) {
            for (_, sender) in senders {
                let _ = sender.try_send(data.clone());
            }
        }
    }

    fn to_all(&self) {
        let data: Arc<str> = stamp().into();
        for senders in self.0.lock().unwrap().values() {
            for (_, sender) in senders {
                let _ = sender.try_send(data.clone());
            }
        }
    }
}

/// Removes the client from the map when its stream is dropped.
struct Unregister {
    clients: Clients,
    user: String,
    id: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap();
        if let Some(senders) = clients.get_mut(&self.user) {
            senders.retain(|(id, _)| *id != self.id);
            if senders.is_empty() {
                clients.remove(&self.user);
            }
        }
    }
}

async fn map_events(
    State(clients): State<Clients>,
    Query(query): Query<UserQuery>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(1024);
    clients
        .lock()
        .unwrap()
        .entry(query.user.clone())
        .or_default()
        .push((id, tx));
    let guard = Unregister {
        clients,
        user: query.user,
        id,
    };
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |data: Arc<str>| {
        let _keep = &guard;
        Ok(AxumEvent::default().data(&*data))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(60)))
}

async fn map_mode(stream: TcpListener, control_listener: TcpListener) {
    let clients: Clients = Arc::default();
    let app = Router::new()
        .route("/events", get(map_events))
        .with_state(clients.clone());
    tokio::spawn(serve_control(
        control_listener,
        control(Arc::new(MapPublisher(clients)), None),
    ));
    axum::serve(stream, app).await.unwrap();
}

// ---- raw: TCP, pre-encoded bytes, no HTTP, no hub -----------------------

struct RawPublisher {
    all: broadcast::Sender<Bytes>,
    users: Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>>>,
}

impl Publisher for RawPublisher {
    fn to_user(&self, user: &str) {
        let frame = Bytes::from(format!("data: {}\n\n", stamp()));
        if let Some(senders) = self.users.lock().unwrap().get(user) {
            for sender in senders {
                let _ = sender.send(frame.clone());
            }
        }
    }

    fn to_all(&self) {
        let _ = self.all.send(Bytes::from(format!("data: {}\n\n", stamp())));
    }
}

async fn raw_mode(listener: TcpListener, control_listener: TcpListener) {
    let (all, _) = broadcast::channel::<Bytes>(1024);
    let users: Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>>> = Arc::default();
    tokio::spawn(serve_control(
        control_listener,
        control(
            Arc::new(RawPublisher {
                all: all.clone(),
                users: users.clone(),
            }),
            None,
        ),
    ));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let mut everyone = all.subscribe();
        let users = users.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let user = line.trim().to_owned();
            let (tx, mut mine) = mpsc::unbounded_channel();
            users
                .lock()
                .unwrap()
                .entry(user.clone())
                .or_default()
                .push(tx);
            let _ = write.write_all(b": ok\n\n").await;
            // Whatever is ready goes out in one write, as a server that
            // cared would do: one syscall per wake-up, not per event.
            let mut batch = BytesMut::new();
            loop {
                let frame = tokio::select! {
                    frame = everyone.recv() => match frame { Ok(frame) => frame, Err(broadcast::error::RecvError::Lagged(_)) => continue, Err(_) => break },
                    frame = mine.recv() => match frame { Some(frame) => frame, None => break },
                };
                batch.extend_from_slice(&frame);
                while batch.len() < 64 * 1024 {
                    match everyone.try_recv() {
                        Ok(frame) => batch.extend_from_slice(&frame),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                while let Ok(frame) = mine.try_recv() {
                    batch.extend_from_slice(&frame);
                }
                if write.write_all(&batch).await.is_err() {
                    break;
                }
                batch.clear();
            }
            let mut users = users.lock().unwrap();
            if let Some(senders) = users.get_mut(&user) {
                senders.retain(|s| !s.is_closed());
            }
        });
    }
}

// ---- nchan: nginx + the nchan module, a real peer ------------------------

/// Publishes by HTTP to nchan's publisher location, one request per event,
/// from a thread of its own (the control calls are synchronous).
struct NchanPublisher(std::sync::mpsc::Sender<(String, String)>);

impl Publisher for NchanPublisher {
    fn to_user(&self, user: &str) {
        let _ = self.0.send((user.to_owned(), stamp()));
    }

    fn to_all(&self) {
        let _ = self.0.send(("all".to_owned(), stamp()));
    }
}

fn nchan_publish(nginx: std::net::SocketAddr, channel: &str, body: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(nginx)?;
    write!(
        stream,
        "POST /pub/{channel} HTTP/1.1\r\nhost: bench\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if !(answer.starts_with(b"HTTP/1.1 201") || answer.starts_with(b"HTTP/1.1 202")) {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    Ok(())
}

async fn nchan_mode(stream_addr: &str, control_addr: &str) {
    let module = "/usr/lib/nginx/modules/ngx_nchan_module.so";
    if !std::path::Path::new(module).exists() {
        eprintln!(
            "nchan mode needs nginx and its nchan module: apt-get install nginx-light libnginx-mod-nchan"
        );
        std::process::exit(2);
    }
    // nginx binds the stream address itself: take a free port for it.
    let nginx_addr = std::net::TcpListener::bind(stream_addr)
        .and_then(|l| l.local_addr())
        .unwrap();
    let control_listener = TcpListener::bind(control_addr).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sse-bench-nchan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    // One process (no master), like the other modes; 20,000 files (nchan
    // takes more than one connection slot for some streams, so 40,000
    // slots); no message kept for subscribers that connect later.
    let config = format!(
        r"load_module {module};
worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 40000; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  nchan_shared_memory_size 256m;
  server {{
    listen {nginx_addr};
    location = /events {{
      nchan_subscriber eventsource;
      nchan_channel_id $arg_user all;
      nchan_subscriber_first_message newest;
    }}
    location ~ ^/pub/(\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 1;
      nchan_message_timeout 10s;
    }}
  }}
}}
"
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut nginx = tokio::process::Command::new("nginx")
        .arg("-c")
        .arg(&config_path)
        .arg("-p")
        .arg(&dir)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting nginx: {e}"));
    let nginx_pid = nginx.id().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(nginx_addr).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        for (channel, body) in rx {
            if let Err(e) = nchan_publish(nginx_addr, &channel, &body) {
                eprintln!("publishing to nchan failed: {e}");
            }
        }
    });
    println!(
        "ready {nginx_addr} {} {nginx_pid}",
        control_listener.local_addr().unwrap()
    );
    tokio::select! {
        () = serve_control(control_listener, control(Arc::new(NchanPublisher(tx)), None)) => {}
        _ = nginx.wait() => eprintln!("nginx exited; see {d}/error.log"),
    }
    let _ = nginx.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn serve_control(listener: TcpListener, app: Router) {
    axum::serve(listener, app).await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, stream_addr, control_addr] = args.as_slice() else {
        eprintln!(
            "usage: bench-server ours|ours-axum|ours-hyper|ours-tls|ours-tls-8k|broadcast|map|raw|nchan STREAM_ADDR CONTROL_ADDR"
        );
        std::process::exit(2);
    };
    if mode == "nchan" {
        return nchan_mode(stream_addr, control_addr).await;
    }
    let stream = TcpListener::bind(stream_addr).await.unwrap();
    let control_listener = TcpListener::bind(control_addr).await.unwrap();
    println!(
        "ready {} {}",
        stream.local_addr().unwrap(),
        control_listener.local_addr().unwrap()
    );
    match mode.as_str() {
        "ours" => ours(stream, control_listener, Serving::Serve).await,
        "ours-axum" => ours(stream, control_listener, Serving::Axum).await,
        "ours-hyper" => ours(stream, control_listener, Serving::Hyper).await,
        "ours-tls" => ours(stream, control_listener, Serving::Tls(None)).await,
        "ours-tls-8k" => ours(stream, control_listener, Serving::Tls(Some(8 * 1024))).await,
        "broadcast" => broadcast_mode(stream, control_listener).await,
        "map" => map_mode(stream, control_listener).await,
        "raw" => raw_mode(stream, control_listener).await,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
