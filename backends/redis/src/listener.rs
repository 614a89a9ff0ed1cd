//! The subscriber side of [`RedisTransport`](crate::hub::RedisTransport):
//! one RESP3 connection (one Redis) or cluster connection (a Redis
//! Cluster) whose pushed messages go straight to the protocol's link.
//!
//! Why straight, and not through a queue: a queue between the socket and
//! the protocol that grows without bound would read whatever Redis sends,
//! however slowly this node delivers, and Redis's
//! `client-output-buffer-limit` (which closes a subscriber that falls too
//! far behind) would never trip. Handing each message over as it is read
//! keeps TCP's backpressure: a node that cannot keep up is cut off by
//! Redis, and its link catches up from the log when it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use sse_core::cluster::Link;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::connection::{Target, connect_cluster};

/// What the transport asks of its listener.
pub(crate) enum Command {
    /// Subscribe to these channels; acknowledged with whether it worked.
    Subscribe(Vec<String>, oneshot::Sender<bool>),
    Unsubscribe(Vec<String>),
}

/// Hands pushed messages to the link as the connection reads them, and
/// notes the connection's end.
struct Pushes {
    link: Link,
    lost: Arc<Lost>,
}

/// Set when a connection reports its end (a `Disconnection` push), or a
/// subscription confirmed (on a cluster, one the client made by itself
/// after a failover means messages may have been missed).
#[derive(Default)]
struct Lost {
    flag: AtomicBool,
    confirmed: AtomicBool,
    wake: Notify,
}

impl AsyncPushSender for Pushes {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                if let [channel, payload, ..] = info.data.as_slice()
                    && let (Some(channel), Some(payload)) = (bulk(channel), bulk(payload))
                {
                    self.link.receive(
                        &String::from_utf8_lossy(channel),
                        Bytes::copy_from_slice(payload),
                    );
                }
            }
            PushKind::Disconnection => {
                self.lost.flag.store(true, Ordering::SeqCst);
                self.lost.wake.notify_one();
            }
            PushKind::Subscribe | PushKind::SSubscribe => {
                self.lost.confirmed.store(true, Ordering::SeqCst);
                self.lost.wake.notify_one();
            }
            _ => {}
        }
        Ok(())
    }
}

fn bulk(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

/// How the listener runs.
pub(crate) struct Listener {
    pub(crate) target: Target,
    pub(crate) link: Link,
    pub(crate) prefix: Arc<str>,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) timeout: Duration,
    pub(crate) ping_every: Duration,
}

/// Why a connection's service ended.
enum Ended {
    /// The connection broke: reconnect.
    Lost,
    /// The transport is gone: stop.
    Closed,
}

impl Listener {
    pub(crate) async fn run(
        self,
        commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        match self.target.clone() {
            Target::Single(client) => self.run_single(&client, commands, ready).await,
            Target::Cluster(seeds) => self.run_cluster(&seeds, commands, ready).await,
        }
    }

    /// The channels of every route the node needs now.
    fn channels(&self) -> Vec<String> {
        self.link
            .routes()
            .iter()
            .map(|route| crate::hub::channel(&self.prefix, route))
            .collect()
    }

    async fn run_single(
        self,
        client: &redis::Client,
        mut commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        let mut ready = Some(ready);
        // Pushes (and subscribing on a multiplexed connection) need RESP3.
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = match redis::Client::open(info.set_redis_settings(resp3)) {
            Ok(client) => client,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                }
                return;
            }
        };
        let mut backoff = self.min_backoff;
        loop {
            let lost = Arc::new(Lost::default());
            match self.connect_single(&client, &lost).await {
                Ok(connection) => {
                    backoff = self.min_backoff;
                    match ready.take() {
                        Some(ready) => {
                            let _ = ready.send(Ok(()));
                        }
                        None => self.link.regained(),
                    }
                    let ended = self.serve_single(connection, &lost, &mut commands).await;
                    self.link.lost();
                    if let Ended::Closed = ended {
                        return;
                    }
                }
                Err(error) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    tracing::warn!(%error, retry_in = ?backoff, "Redis hub cannot reconnect yet");
                }
            }
            if let Ended::Closed = wait_offline(backoff, &mut commands).await {
                return;
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    async fn connect_single(
        &self,
        client: &redis::Client,
        lost: &Arc<Lost>,
    ) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(Pushes {
                link: self.link.clone(),
                lost: lost.clone(),
            });
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        for chunk in self.channels().chunks(1_000) {
            within(self.timeout, connection.subscribe(chunk)).await?;
        }
        Ok(connection)
    }

    async fn serve_single(
        &self,
        mut connection: redis::aio::MultiplexedConnection,
        lost: &Lost,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        loop {
            if lost.flag.load(Ordering::SeqCst) {
                return Ended::Lost;
            }
            tokio::select! {
                // A confirmation wakes it too: only the flag means lost.
                () = lost.wake.notified() => continue,
                command = commands.recv() => match command {
                    Some(Command::Subscribe(channels, ack)) => {
                        let subscribed = within(self.timeout, connection.subscribe(&channels)).await;
                        if let Err(error) = &subscribed {
                            tracing::warn!(%error, "subscribing on Redis failed");

                        }
                        let subscribed = subscribed.is_ok();
                        let _ = ack.send(subscribed);
                        if !subscribed {
                            return Ended::Lost;
                        }
                    }
                    Some(Command::Unsubscribe(channels)) => {
                        if within(self.timeout, connection.unsubscribe(&channels)).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                    None => return Ended::Closed,
                },
                _ = ping.tick() => {
                    // A silently dead connection answers nothing.
                    let ping = redis::cmd("PING");
                    if within(self.timeout, ping.query_async::<Value>(&mut connection)).await.is_err() {
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    /// The listener on a Redis Cluster: one RESP3 cluster connection whose
    /// sharded subscriptions the client keeps on each channel's current
    /// shard, re-subscribing after a disconnection or a failover. Each
    /// disconnection it reports means messages may have been missed: once
    /// the cluster answers again and the re-subscriptions have settled, the
    /// link is reported regained (and the protocol catches up).
    async fn run_cluster(
        self,
        seeds: &[String],
        mut commands: mpsc::UnboundedReceiver<Command>,
        ready: oneshot::Sender<Result<(), redis::RedisError>>,
    ) {
        let lost = Arc::new(Lost::default());
        let connected = async {
            let client = Target::cluster_builder(seeds, self.timeout)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(Pushes {
                    link: self.link.clone(),
                    lost: lost.clone(),
                })
                .build()?;
            let mut connection = connect_cluster(&client, self.timeout).await?;
            for channel in self.channels() {
                within(self.timeout, connection.ssubscribe(&channel)).await?;
            }
            Ok::<_, redis::RedisError>(connection)
        };
        let mut connection = match connected.await {
            Ok(connection) => connection,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        // Since when messages may have been missed, and when the client
        // last confirmed a (re-)subscription.
        let mut missed_since: Option<tokio::time::Instant> = None;
        let mut last_confirmation = tokio::time::Instant::now();
        let mut last_own_subscribe = tokio::time::Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = lost.wake.notified() => {
                    if lost.flag.swap(false, Ordering::SeqCst) {
                        if missed_since.is_none() {
                            tracing::warn!("Redis Cluster connection lost; re-subscribing");
                            self.link.lost();
                        }
                        missed_since = Some(tokio::time::Instant::now());
                    }
                    if lost.confirmed.swap(false, Ordering::SeqCst) {
                        last_confirmation = tokio::time::Instant::now();
                        // Not ours: the client re-subscribed a channel on its
                        // shard's new or restarted primary.
                        if last_own_subscribe.elapsed() > Duration::from_secs(1) && missed_since.is_none() {
                            self.link.lost();
                            missed_since = Some(tokio::time::Instant::now());
                        }
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Subscribe(channels, ack)) => {
                        // Channels of one SSUBSCRIBE must share a slot: each
                        // goes on its own, many in flight.
                        let timeout = self.timeout;
                        let failed = futures_util::stream::iter(channels.into_iter().map(|channel| {
                            let mut connection = connection.clone();
                            async move { within(timeout, connection.ssubscribe(&channel)).await.is_err() }
                        }))
                        .buffer_unordered(256)
                        .fold(false, |any, failed| std::future::ready(any || failed))
                        .await;
                        last_own_subscribe = tokio::time::Instant::now();
                        let _ = ack.send(!failed);
                        if failed {
                            // The client retries it once the shard answers.
                            missed_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                    }
                    Some(Command::Unsubscribe(channels)) => {
                        for channel in &channels {
                            let _ = within(self.timeout, connection.sunsubscribe(channel)).await;
                        }
                    }
                    None => return,
                },
                _ = check.tick() => {
                    let Some(since) = missed_since else { continue };
                    if since.elapsed() >= Duration::from_millis(500)
                        && last_confirmation.elapsed() >= Duration::from_millis(250)
                        && cluster_ok(&mut connection, self.timeout).await
                    {
                        missed_since = None;
                        tracing::info!("Redis Cluster answers again");
                        self.link.regained();
                    }
                }
            }
        }
    }
}

/// Sleeps out the backoff, refusing subscriptions meanwhile (they are
/// made on reconnect, from the link's routes).
async fn wait_offline(backoff: Duration, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return Ended::Lost,
            command = commands.recv() => match command {
                Some(Command::Subscribe(_, ack)) => {
                    let _ = ack.send(false);
                }
                Some(Command::Unsubscribe(_)) => {}
                None => return Ended::Closed,
            },
        }
    }
}

/// `future`, or an I/O error once `timeout` passed.
async fn within<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "Redis timed out")))?
}

/// Whether the cluster serves every slot again (`cluster_state:ok`): a
/// `PING` is answered even while a shard has no primary, and the log would
/// refuse the catch-up then.
async fn cluster_ok(
    connection: &mut redis::cluster_async::ClusterConnection,
    timeout: Duration,
) -> bool {
    let mut command = redis::cmd("CLUSTER");
    command.arg("INFO");
    let info = command.query_async::<String>(connection);
    matches!(
        tokio::time::timeout(timeout, info).await,
        Ok(Ok(info)) if info.lines().any(|line| line.trim() == "cluster_state:ok")
    )
}
