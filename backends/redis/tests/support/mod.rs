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

/// A server instance: the SSE service on a `RedisHub`, served over HTTP.
pub struct Node {
    pub sse: sse_tower::SseService,
    pub hub: sse_redis::RedisHub,
    pub server: sse_conformance::server::TestServer,
}

/// Cookie sessions `alice-0`..`alice-2` and `bob-0`..`bob-2`.
pub fn tab_sessions() -> sse_core::InMemorySessions {
    let sessions = sse_core::InMemorySessions::new();
    for user in ["alice", "bob"] {
        for tab in 0..3 {
            sessions.insert(
                format!("{user}-{tab}"),
                sse_core::Principal::new(user).with_session(format!("{user}-{tab}")),
            );
        }
    }
    sessions
}

/// A node whose hub reaches Redis at `hub_url` (one server, a proxy in
/// front of it, or a cluster's seeds) under `prefix`, storing in `store`;
/// it notices an outage within a second.
pub async fn node(hub_url: &str, prefix: &str, store: &sse_redis::RedisStore) -> Node {
    let hub = required(
        sse_redis::RedisHub::builder(hub_url)
            .prefix(prefix)
            .reconnect_backoff(
                std::time::Duration::from_millis(50),
                std::time::Duration::from_millis(500),
            )
            .timeout(std::time::Duration::from_secs(1))
            .ping_every(std::time::Duration::from_secs(1))
            .connect()
            .await,
    );
    let sse = sse_tower::SseService::builder(sse_core::CookieSessionAuthenticator::new(
        "sid",
        tab_sessions(),
    ))
    .notifier(&sse_core::Notifier::with_store(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(hub.clone()),
    ))
    .queue_capacity(10_000)
    .replay_limit(10_000)
    .build();
    let server = sse_conformance::server::TestServer::start(sse.clone())
        .await
        .unwrap();
    Node { sse, hub, server }
}

/// Opens session `sid`'s stream on `node`.
pub async fn open(node: &Node, sid: &str) -> sse_conformance::client::Response {
    open_stream(&node.server.authority(), sid).await
}

/// Opens the event stream of session `sid` at `authority` (a test server
/// serving `/events`) and reads its `connected` event.
pub async fn open_stream(authority: &str, sid: &str) -> sse_conformance::client::Response {
    let mut stream = sse_conformance::client::Request::get("/events")
        .header("cookie", format!("sid={sid}"))
        .send(authority)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let connected = stream
        .next_event(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(connected.event_type, "connected");
    stream
}

/// The title of a `notification` event's notification.
pub fn title(event: &sse_conformance::parser::ParsedEvent) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    data["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A `redis-server` of the test's own, on a free port, persisting to a
/// temporary directory (so a restart keeps its data); killed on drop.
pub struct RedisProcess {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
    args: Vec<String>,
}

impl RedisProcess {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// A replica of the server on `primary`'s port.
    pub async fn replica_of(primary: u16) -> Self {
        Self::start_with(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ])
        .await
    }

    /// Stops the process (SIGSTOP) or lets it go on (SIGCONT).
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} failed");
        }
    }

    async fn start_with(args: Vec<String>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("sse-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut process = Self {
            port,
            dir,
            child: None,
            args,
        };
        process.restart().await;
        process
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server is required for this test: {e}"));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: three primaries and a replica each,
/// `redis-server` processes on free ports with a one-second node timeout
/// (so a failover takes seconds); every process killed on drop.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
    children: Vec<Option<std::process::Child>>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let ports: Vec<u16> = (0..6)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "sse-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            ports: ports.clone(),
            dir,
            children: Vec::new(),
        };
        for &port in &ports {
            let child = cluster.spawn(port);
            cluster.children.push(Some(child));
        }
        for &port in &ports {
            wait_for_port(port).await;
        }
        let mut create = std::process::Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("redis-cli is required for this test: {e}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_until_ok().await;
        // A replica that never synced does not take over: wait for each.
        for _ in 0..400 {
            let synced = ports.iter().all(|&port| {
                let info = Self::cli(port, &["info", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            if synced {
                return cluster;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the Redis Cluster's replicas did not sync");
    }

    fn spawn(&self, port: u16) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server is required for this test: {e}"))
    }

    /// Seeds, as the crate takes them: comma-separated URLs.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One seed only: the crate finds out it is a cluster.
    pub fn seed(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    fn cli(port: u16, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until every live node says `cluster_state:ok` and agrees on
    /// three primaries.
    pub async fn wait_until_ok(&self) {
        for _ in 0..400 {
            let ok = self
                .ports
                .iter()
                .zip(&self.children)
                .filter(|(_, child)| child.is_some())
                .all(|(&port, _)| {
                    let info = Self::cli(port, &["cluster", "info"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_size:3")
                });
            if ok {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the Redis Cluster did not become ok");
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot: u16 = Self::cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        let nodes = Self::cli(self.ports[0], &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            for range in &fields[8..] {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(low), Ok(high)) = (low.parse::<u16>(), high.parse::<u16>())
                    && (low..=high).contains(&slot)
                {
                    let addr = fields[1].split('@').next().unwrap();
                    return addr.rsplit(':').next().unwrap().parse().unwrap();
                }
            }
        }
        panic!("no primary serves slot {slot}:\n{nodes}");
    }

    /// The ports of the current primaries.
    pub fn primaries(&self) -> Vec<u16> {
        Self::cli(self.ports[0], &["cluster", "nodes"])
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .filter_map(|line| {
                let addr = line.split_whitespace().nth(1)?.split('@').next()?;
                addr.rsplit(':').next()?.parse().ok()
            })
            .collect()
    }

    /// Kills (SIGKILL) the node on `port`; its replica takes over after
    /// the node timeout.
    pub fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|&p| p == port).unwrap();
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("redis-server on port {port} did not start");
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
