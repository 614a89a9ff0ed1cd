//! The fault harness: brokers of the run's own (a `redis-server` with a
//! replica it can promote, a `nats-server`, the PostgreSQL the store uses),
//! each node reaching its broker through a TCP proxy of its own, and the
//! faults injected into them while the sender keeps notifying.
//!
//! | fault | what happens |
//! | --- | --- |
//! | `kill` | the broker is killed (`SIGKILL`) and started again, empty |
//! | `pause` | the broker is stopped (`SIGSTOP`), then continued |
//! | `cut-one` | one node's link to the broker is cut (connections reset, new ones refused), then restored |
//! | `cut-all` | every node's link is cut, then restored |
//! | `blackhole` | every link stays open but no byte moves, then bytes flow again |
//! | `promote` | the primary dies; its replica is promoted and the links move to it (Redis) |
//! | `terminate` | the database terminates every backend of the run's database (PostgreSQL) |
//! | `quiet-publish` | on a quiet system, a node whose link is cut stores a notification (its publish fails); the link comes back |
//! | `logout-during-outage` | a user is logged out at a node whose link is cut: its tabs must end once the node is back |
//!
//! Every fault runs while the sender notifies random users (except in
//! `quiet-publish`, where it waits). After each, the harness waits until
//! every stream is connected and the records stop changing, and counts
//! what every tab received against every acknowledged send.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use sse_conformance::proxy::TcpProxy;
use tokio::process::{Child, Command};

/// One fault's outcome, cumulative counts taken after it settled.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct FaultResult {
    pub(crate) fault: String,
    pub(crate) lasted_ms: u64,
    /// From the fault's end until every stream was connected.
    pub(crate) streams_back_ms: Option<u64>,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) leaked: u64,
    /// Tabs of a user logged out during the fault that still stream.
    pub(crate) revoked_streaming: u64,
    /// From the fault's end until every send so far was delivered (or 30 s).
    pub(crate) settled_ms: u64,
}

/// The faults that apply to `engine`, in the order they run.
pub(crate) fn faults_of(engine: &str) -> Vec<&'static str> {
    let mut faults = match engine {
        "redis" => vec!["kill", "pause", "promote"],
        "nats" => vec!["kill", "pause"],
        _ => vec!["terminate"],
    };
    faults.extend([
        "cut-one",
        "cut-all",
        "blackhole",
        "quiet-publish",
        "logout-during-outage",
    ]);
    faults
}

/// A broker process of the run's own.
struct Process {
    port: u16,
    args: Vec<String>,
    program: &'static str,
    child: Option<Child>,
}

impl Process {
    async fn start(program: &'static str, port: u16, args: Vec<String>) -> Result<Self, String> {
        let mut process = Self {
            port,
            args,
            program,
            child: None,
        };
        process.restart().await?;
        Ok(process)
    }

    async fn restart(&mut self) -> Result<(), String> {
        self.kill().await;
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{} is required for the fault harness: {e}", self.program))?;
        self.child = Some(child);
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!(
            "{} on port {} did not start",
            self.program, self.port
        ))
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    async fn signal(&self, signal: &str) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .await;
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn redis_args(port: u16, replica_of: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(primary) = replica_of {
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.to_string(),
        ]);
    }
    args
}

/// The run's broker and every node's proxy to it.
pub(crate) struct Broker {
    primary: Option<Process>,
    replica: Option<Process>,
    /// `host:port` the proxies forward to.
    upstream: String,
    proxies: Vec<TcpProxy>,
    /// The URL a node connects to, with `{addr}` for its proxy's address.
    url_template: String,
    /// The run's database, for `terminate`.
    store: String,
}

impl Broker {
    /// Starts the broker for `engine` (PostgreSQL: the store's server) and
    /// a proxy per node.
    pub(crate) async fn start(engine: &str, nodes: usize, store: &str) -> Result<Self, String> {
        let (primary, replica, upstream, url_template) = match engine {
            "redis" => {
                let port = free_port()?;
                let primary = Process::start("redis-server", port, redis_args(port, None)).await?;
                let replica_port = free_port()?;
                let replica = Process::start(
                    "redis-server",
                    replica_port,
                    redis_args(replica_port, Some(port)),
                )
                .await?;
                (
                    Some(primary),
                    Some(replica),
                    format!("127.0.0.1:{port}"),
                    "redis://{addr}".to_owned(),
                )
            }
            "nats" => {
                let port = free_port()?;
                let args = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ];
                let primary = Process::start("nats-server", port, args).await?;
                (
                    Some(primary),
                    None,
                    format!("127.0.0.1:{port}"),
                    "nats://{addr}".to_owned(),
                )
            }
            _ => {
                // postgres://user@HOST:PORT/db: the proxy stands for HOST:PORT.
                let after_at = store.rsplit_once('@').map_or(store, |(_, rest)| rest);
                let authority = after_at.split('/').next().unwrap_or("127.0.0.1:5432");
                (
                    None,
                    None,
                    authority.to_owned(),
                    store.replacen(authority, "{addr}", 1),
                )
            }
        };
        let mut proxies = Vec::new();
        for _ in 0..nodes {
            proxies.push(
                TcpProxy::start(upstream.clone())
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Self {
            primary,
            replica,
            upstream,
            proxies,
            url_template,
            store: store.to_owned(),
        })
    }

    /// Node `index`'s hub URL: through its own proxy.
    pub(crate) fn url(&self, index: usize) -> String {
        let addr: SocketAddr = self.proxies[index].addr();
        self.url_template.replace("{addr}", &addr.to_string())
    }

    pub(crate) fn cut(&self, node: Option<usize>) {
        for (k, proxy) in self.proxies.iter().enumerate() {
            if node.is_none_or(|n| n == k) {
                proxy.cut();
            }
        }
    }

    pub(crate) fn restore(&self) {
        for proxy in &self.proxies {
            proxy.restore();
            proxy.unstall();
        }
    }

    /// Starts `fault`; returns once it is in effect. [`heal`](Self::heal)
    /// ends it.
    pub(crate) async fn inject(&mut self, fault: &str) -> Result<(), String> {
        match fault {
            "kill" => {
                if let Some(primary) = &mut self.primary {
                    primary.kill().await;
                }
            }
            "pause" => {
                if let Some(primary) = &self.primary {
                    primary.signal("-STOP").await;
                }
            }
            "promote" => self.promote().await?,
            "terminate" => terminate(&self.store).await?,
            "cut-one" => self.cut(Some(0)),
            "cut-all" => self.cut(None),
            "blackhole" => {
                for proxy in &self.proxies {
                    proxy.stall();
                }
            }
            other => return Err(format!("unknown fault {other:?}")),
        }
        Ok(())
    }

    /// Ends `fault`.
    pub(crate) async fn heal(&mut self, fault: &str) -> Result<(), String> {
        match fault {
            "kill" => {
                if let Some(primary) = &mut self.primary {
                    primary.restart().await?;
                }
            }
            "pause" => {
                if let Some(primary) = &self.primary {
                    primary.signal("-CONT").await;
                }
            }
            _ => self.restore(),
        }
        Ok(())
    }

    /// The primary dies; the replica becomes the primary behind every
    /// proxy; a new replica follows it.
    async fn promote(&mut self) -> Result<(), String> {
        let (Some(mut primary), Some(replica)) = (self.primary.take(), self.replica.take()) else {
            return Err("promote needs a primary and a replica".into());
        };
        primary.kill().await;
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", replica.port))
            .map_err(|e| e.to_string())?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        self.upstream = format!("127.0.0.1:{}", replica.port);
        for proxy in &self.proxies {
            proxy.redirect(self.upstream.clone());
            proxy.cut();
        }
        let replica_port = free_port()?;
        self.replica = Some(
            Process::start(
                "redis-server",
                replica_port,
                redis_args(replica_port, Some(replica.port)),
            )
            .await?,
        );
        self.primary = Some(replica);
        Ok(())
    }
}

/// Terminates every other backend of the run's database.
async fn terminate(store: &str) -> Result<(), String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(store)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .map_err(|e| e.to_string())?;
    pool.close().await;
    Ok(())
}

/// What a fault needs of the run.
pub(crate) struct FaultRun<'a> {
    pub(crate) plan: &'a crate::Plan,
    pub(crate) addrs: &'a [SocketAddr],
    pub(crate) clients: &'a tokio::sync::Mutex<Vec<crate::procs::ClientProc>>,
    pub(crate) total: u64,
    pub(crate) sent: &'a std::sync::Mutex<Vec<(u32, u64)>>,
    pub(crate) sender: &'a str,
    pub(crate) paused: &'a std::sync::atomic::AtomicBool,
    pub(crate) excluded: &'a std::sync::Mutex<std::collections::HashSet<u32>>,
    pub(crate) log_dir: &'a std::path::Path,
}

/// Counts summed over every client's `verify`.
#[derive(Default)]
struct Counts {
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    leaked: u64,
}

impl FaultRun<'_> {
    /// Injects `fault`, heals it, waits for the system to settle and counts.
    pub(crate) async fn one(
        &self,
        broker: &mut Broker,
        fault: &str,
    ) -> Result<FaultResult, String> {
        use std::sync::atomic::Ordering;
        let lasting = Duration::from_secs_f64(self.plan.fault_secs);
        let started = std::time::Instant::now();
        match fault {
            "quiet-publish" => {
                // Nothing else moves: only the protocol can deliver it.
                self.paused.store(true, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                broker.inject("cut-one").await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let user = 1;
                let id = crate::notify(self.addrs[0], self.sender, user, "quiet").await?;
                self.record(user, id);
                tokio::time::sleep(lasting).await;
                broker.heal("cut-one").await?;
            }
            "logout-during-outage" => {
                // Client 0's first user: nothing is sent to it from now on,
                // so every tab had all it was sent before it ends.
                let user = 0;
                self.excluded
                    .lock()
                    .map_err(|e| e.to_string())?
                    .insert(user);
                tokio::time::sleep(Duration::from_secs(2)).await;
                broker.inject("cut-one").await?;
                let answer = self.clients.lock().await[0]
                    .ask(&format!("logout {user}"))
                    .await?;
                if answer["status"].as_u64() != Some(204) {
                    return Err(format!("logout during the outage answered {answer}"));
                }
                tokio::time::sleep(lasting).await;
                broker.heal("cut-one").await?;
            }
            other => {
                broker.inject(other).await?;
                tokio::time::sleep(lasting).await;
                broker.heal(other).await?;
            }
        }
        let lasted_ms = started.elapsed().as_millis() as u64;
        let healed = std::time::Instant::now();
        // What the fault must not lose: everything acknowledged until it
        // healed. (Sends after it are in flight at every count; the next
        // fault and the final tally check them.)
        let owed = self.sent.lock().map_err(|e| e.to_string())?.len();
        // Every stream back (less a logged-out user's tabs).
        let logged_out = self.excluded.lock().map_err(|e| e.to_string())?.len() as u64;
        let want = self.total - logged_out * u64::from(self.plan.tabs);
        let mut streams_back_ms = None;
        while healed.elapsed() < Duration::from_secs(60) {
            let (connected, ..) = crate::totals(self.clients).await?;
            if connected >= want {
                streams_back_ms = Some(healed.elapsed().as_millis() as u64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.paused.store(false, Ordering::Relaxed);
        // Counts once nothing more arrives (or after 30 s).
        let mut counts = self.counts(owed).await?;
        let settling = std::time::Instant::now();
        while counts.lost > 0 && settling.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            counts = self.counts(owed).await?;
        }
        let settled_ms = healed.elapsed().as_millis() as u64;
        let mut revoked_streaming = self.revoked_streaming().await?;
        let waiting = std::time::Instant::now();
        while revoked_streaming > 0 && waiting.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            revoked_streaming = self.revoked_streaming().await?;
        }
        Ok(FaultResult {
            fault: fault.to_owned(),
            lasted_ms,
            streams_back_ms,
            lost: counts.lost,
            duplicated: counts.duplicated,
            out_of_order: counts.out_of_order,
            leaked: counts.leaked,
            revoked_streaming,
            settled_ms,
        })
    }

    fn record(&self, user: u32, id: u64) {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push((user, id));
        }
    }

    async fn revoked_streaming(&self) -> Result<u64, String> {
        let mut sum = 0;
        for client in self.clients.lock().await.iter_mut() {
            sum += client.ask("stats").await?["logged_out_streaming"]
                .as_u64()
                .unwrap_or(0);
        }
        Ok(sum)
    }

    /// Every tab's record against the first `owed` acknowledged sends.
    async fn counts(&self, owed: usize) -> Result<Counts, String> {
        let path = self.log_dir.join("sent-so-far.txt");
        let mut text = format!("{}\n", self.plan.broadcasts);
        for (user, id) in self
            .sent
            .lock()
            .map_err(|e| e.to_string())?
            .iter()
            .take(owed)
        {
            text.push_str(&format!("{user} {id}\n"));
        }
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let mut counts = Counts::default();
        for client in self.clients.lock().await.iter_mut() {
            let v = client.ask(&format!("verify {}", path.display())).await?;
            let field = |name: &str| v[name].as_u64().unwrap_or(0);
            counts.lost += field("lost");
            counts.duplicated += field("duplicated");
            counts.out_of_order += field("out_of_order");
            counts.leaked += field("leaked");
        }
        Ok(counts)
    }
}
