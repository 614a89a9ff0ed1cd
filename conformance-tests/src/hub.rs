//! The [`Hub`] suite: run it against your hub from a `#[tokio::test]`.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! sse_conformance::hub::run(|| async { sse_core::InMemoryHub::new() }).await;
//! # }
//! ```
//!
//! Each check gets a fresh hub from the factory and uses user, group and
//! topic names unique to the run, so hubs over a shared broker work too.
//! The checks rely on what the [`Hub`] contract promises, among them
//! `Hub::stats().subscriptions` counting registrations exactly (that is
//! how leaks are seen), events from one publisher arriving in the order
//! published, and [`Event::disconnect`] being delivered like any event.
//!
//! Hubs that span nodes also pass [`run_nodes`], whose factory makes a new
//! node on the same broker each time it is called:
//!
//! ```no_run
//! # async fn run() {
//! // For a hub over a broker, e.g. sse-redis:
//! // sse_conformance::hub::run_nodes(|| async { RedisHub::connect(url).await.unwrap() }).await;
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sse_core::{Audience, Event, EventLog, Hub, InMemoryLog, Principal, RecvError, Subscription};

use crate::report::{Report, ensure, run_id};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check and panics with the table if any failed.
pub async fn run<H, F, Fut>(make_hub: F)
where
    H: Hub,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    check(make_hub).await.assert_passed();
}

/// Runs every check and returns the report.
pub async fn check<H, F, Fut>(make_hub: F) -> Report
where
    H: Hub,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    let run = run_id();
    let mut report = Report::default();
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let hub = Arc::new(make_hub().await);
            let ns = format!("{run}-{}", stringify!($name));
            report.run(concat!("hub::", stringify!($name)), CHECK_TIMEOUT, || $name(hub, ns)).await;
        )*};
    }
    checks!(
        user_reaches_every_tab_of_that_user_only,
        session_group_topic_and_connection_targeting,
        everyone_reaches_every_subscription,
        live_as_soon_as_subscribe_returns,
        frames_arrive_byte_for_byte,
        one_publisher_order_is_kept,
        isolation_under_concurrent_publishers,
        full_queue_never_blocks_publish_and_lags,
        drop_unregisters,
        churn_leaves_no_registration,
        connection_ids_are_unique,
        disconnect_is_delivered_like_an_event,
        durable_events_arrive_in_position_order_without_gaps,
        presence_counts_open_streams_per_audience,
        a_keyed_event_replaces_its_undelivered_predecessor,
    );
    report
}

/// Runs the multi-node checks against a hub spanning nodes and panics with
/// the table if any failed. Each call of `make_node` must return a new node
/// (its own local connections) on the same broker as the others.
pub async fn run_nodes<H, F, Fut>(make_node: F)
where
    H: Hub,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    check_nodes(make_node).await.assert_passed();
}

/// Runs the multi-node checks and returns the report.
pub async fn check_nodes<H, F, Fut>(make_node: F) -> Report
where
    H: Hub,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    let run = run_id();
    let mut report = Report::default();
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let nodes = [Arc::new(make_node().await), Arc::new(make_node().await), Arc::new(make_node().await)];
            let ns = format!("{run}-{}", stringify!($name));
            report.run(concat!("hub::nodes::", stringify!($name)), CHECK_TIMEOUT, || $name(nodes, ns)).await;
        )*};
    }
    checks!(
        every_audience_reaches_other_nodes,
        connection_ids_are_unique_across_nodes,
        a_connection_audience_reaches_only_that_connection,
        disconnect_reaches_every_node,
        durable_events_reach_every_node_in_position_order,
        presence_spans_nodes,
        conflation_keys_travel_between_nodes,
        hostile_ids_never_reach_another_audience,
    );
    report
}

type Shared<H> = Arc<H>;

fn user(ns: &str, name: &str) -> String {
    format!("{ns}-{name}")
}

fn event(label: &str) -> Event {
    Event::builder()
        .event("check")
        .data(label)
        .build()
        .unwrap_or_else(|_| Event::comment(label))
}

fn label(event: &Event) -> String {
    let text = String::from_utf8_lossy(event.frame());
    text.lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_default()
        .to_owned()
}

async fn recv(sub: &mut Subscription, who: &str) -> Result<Event, String> {
    match tokio::time::timeout(RECV_TIMEOUT, sub.recv()).await {
        Ok(Ok(event)) => Ok(event),
        Ok(Err(error)) => Err(format!("{who}: expected an event, receive failed: {error}")),
        Err(_) => Err(format!(
            "{who}: expected an event within {RECV_TIMEOUT:?}, got none"
        )),
    }
}

/// Proves `sub` received nothing before `marker`: publishes the marker to
/// `audience` and requires it to be the next event.
async fn expect_nothing_before_marker<H: Hub>(
    hub: &H,
    sub: &mut Subscription,
    audience: &Audience,
    who: &str,
) -> Result<(), String> {
    let marker = event("marker");
    hub.publish(audience, &marker)
        .await
        .map_err(|e| format!("publish failed: {e}"))?;
    let got = recv(sub, who).await?;
    ensure!(
        label(&got) == "marker",
        "{who} received {:?}, which was not addressed to it",
        label(&got)
    );
    Ok(())
}

async fn subscribe<H: Hub>(
    hub: &H,
    principal: &Principal,
    capacity: usize,
) -> Result<Subscription, String> {
    hub.subscribe(principal, capacity)
        .await
        .map_err(|e| format!("subscribe failed: {e}"))
}

async fn publish<H: Hub>(hub: &H, audience: &Audience, event: &Event) -> Result<(), String> {
    hub.publish(audience, event)
        .await
        .map_err(|e| format!("publish to {audience:?} failed: {e}"))
}

async fn user_reaches_every_tab_of_that_user_only<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let alice = Principal::new(user(&ns, "alice"));
    let bob = Principal::new(user(&ns, "bob"));
    let mut tab1 = subscribe(&*hub, &alice, 16).await?;
    let mut tab2 = subscribe(&*hub, &alice, 16).await?;
    let mut bobs = subscribe(&*hub, &bob, 16).await?;
    publish(
        &*hub,
        &Audience::user(alice.user().clone()),
        &event("for-alice"),
    )
    .await?;
    for (sub, who) in [(&mut tab1, "alice tab 1"), (&mut tab2, "alice tab 2")] {
        let got = recv(sub, who).await?;
        ensure!(
            label(&got) == "for-alice",
            "{who} got {:?}, expected \"for-alice\"",
            label(&got)
        );
    }
    expect_nothing_before_marker(&*hub, &mut bobs, &Audience::user(bob.user().clone()), "bob").await
}

async fn session_group_topic_and_connection_targeting<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let a = Principal::new(user(&ns, "a"))
        .with_session(user(&ns, "sa"))
        .with_groups([user(&ns, "g1")])
        .with_topics([user(&ns, "t1")]);
    let b = Principal::new(user(&ns, "b"))
        .with_session(user(&ns, "sb"))
        .with_groups([user(&ns, "g1"), user(&ns, "g2")])
        .with_topics([user(&ns, "t2")]);
    let mut sa = subscribe(&*hub, &a, 64).await?;
    let mut sb = subscribe(&*hub, &b, 64).await?;
    let b_id = sb.id();
    let cases: Vec<(Audience, &str, bool, bool)> = vec![
        (Audience::session(user(&ns, "sa")), "session-a", true, false),
        (Audience::group(user(&ns, "g1")), "group-1", true, true),
        (Audience::group(user(&ns, "g2")), "group-2", false, true),
        (Audience::topic(user(&ns, "t1")), "topic-1", true, false),
        (Audience::topic(user(&ns, "t2")), "topic-2", false, true),
        (Audience::Connection(b_id), "connection-b", false, true),
        (
            Audience::group(user(&ns, "nobody")),
            "group-none",
            false,
            false,
        ),
    ];
    for (audience, name, _, _) in &cases {
        publish(&*hub, audience, &event(name)).await?;
    }
    let expect_a: Vec<&str> = cases.iter().filter(|c| c.2).map(|c| c.1).collect();
    let expect_b: Vec<&str> = cases.iter().filter(|c| c.3).map(|c| c.1).collect();
    for (sub, expected, who) in [(&mut sa, expect_a, "a"), (&mut sb, expect_b, "b")] {
        for want in expected {
            let got = label(&recv(sub, who).await?);
            ensure!(
                got == want,
                "subscription {who}: expected {want:?} next, got {got:?} (targeting delivered to the wrong connection)"
            );
        }
    }
    let a_id = sa.id();
    expect_nothing_before_marker(&*hub, &mut sa, &Audience::Connection(a_id), "a").await?;
    expect_nothing_before_marker(&*hub, &mut sb, &Audience::Connection(b_id), "b").await
}

async fn everyone_reaches_every_subscription<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let mut subs = Vec::new();
    for i in 0..5 {
        subs.push(subscribe(&*hub, &Principal::new(user(&ns, &format!("u{i}"))), 16).await?);
    }
    publish(&*hub, &Audience::Everyone, &event("all")).await?;
    for (i, sub) in subs.iter_mut().enumerate() {
        let got = recv(sub, &format!("u{i}")).await?;
        ensure!(
            label(&got) == "all",
            "u{i} got {:?}, expected the broadcast",
            label(&got)
        );
    }
    Ok(())
}

async fn live_as_soon_as_subscribe_returns<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    for round in 0..50 {
        let p = Principal::new(user(&ns, &format!("r{round}")));
        let mut sub = subscribe(&*hub, &p, 4).await?;
        publish(&*hub, &Audience::user(p.user().clone()), &event("now")).await?;
        recv(
            &mut sub,
            "a subscription published to right after subscribe returned",
        )
        .await
        .map_err(|e| {
            format!("round {round}: {e}: subscribe must return only once the subscription is live")
        })?;
    }
    Ok(())
}

async fn frames_arrive_byte_for_byte<H: Hub>(hub: Shared<H>, ns: String) -> Result<(), String> {
    let p = Principal::new(user(&ns, "bytes"));
    let mut sub = subscribe(&*hub, &p, 16).await?;
    let tricky = [
        Event::builder()
            .id("42")
            .event("notification")
            .data("multi\nline\r\ndata")
            .build(),
        Event::builder().data("ünïcødé 🚀 \u{0}").build(),
        Event::builder().id("").data("").build(),
        Event::builder().comment("only a comment").build(),
        Event::builder().data("x".repeat(64 * 1024)).build(),
    ];
    let mut sent = Vec::new();
    for event in tricky {
        let event = event.map_err(|e| format!("building a test event failed: {e}"))?;
        publish(&*hub, &Audience::user(p.user().clone()), &event).await?;
        sent.push(event);
    }
    for want in sent {
        let got = recv(&mut sub, "bytes").await?;
        ensure!(
            got.frame() == want.frame(),
            "frame changed in transit: sent {:?}, received {:?}",
            want,
            got
        );
        ensure!(
            got.id() == want.id(),
            "id changed in transit: sent {:?}, received {:?}",
            want.id(),
            got.id()
        );
    }
    Ok(())
}

async fn one_publisher_order_is_kept<H: Hub>(hub: Shared<H>, ns: String) -> Result<(), String> {
    let p = Principal::new(user(&ns, "order"));
    let mut sub = subscribe(&*hub, &p, 2_000).await?;
    let audience = Audience::user(p.user().clone());
    for i in 0..1_000u32 {
        let e = Event::builder()
            .id(i.to_string())
            .data("o")
            .build()
            .map_err(|e| e.to_string())?;
        publish(&*hub, &audience, &e).await?;
    }
    for i in 0..1_000u64 {
        let got = recv(&mut sub, "order").await?;
        let id = got.id().map(str::to_owned);
        ensure!(
            id == Some(i.to_string()),
            "expected event {i} next, got {id:?}: events from one publisher were reordered or lost"
        );
    }
    Ok(())
}

async fn isolation_under_concurrent_publishers<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    const USERS: usize = 8;
    const TABS: usize = 3;
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 200;
    let mut subs = Vec::new();
    for u in 0..USERS {
        for t in 0..TABS {
            let p = Principal::new(user(&ns, &format!("u{u}")));
            subs.push((
                u,
                t,
                subscribe(&*hub, &p, PUBLISHERS * PER_PUBLISHER).await?,
            ));
        }
    }
    let mut tasks = Vec::new();
    for publisher in 0..PUBLISHERS {
        let hub = hub.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent: HashMap<usize, usize> = HashMap::new();
            for i in 0..PER_PUBLISHER {
                let target = (i * 7 + publisher * 3) % USERS;
                let data = format!("{target}/{publisher}/{i}");
                let e = Event::builder()
                    .data(data)
                    .build()
                    .map_err(|e| e.to_string())?;
                hub.publish(&Audience::user(user(&ns, &format!("u{target}"))), &e)
                    .await
                    .map_err(|e| format!("publish failed: {e}"))?;
                *sent.entry(target).or_default() += 1;
            }
            Ok::<_, String>(sent)
        }));
    }
    let mut expected: HashMap<usize, usize> = HashMap::new();
    for task in tasks {
        let sent = task
            .await
            .map_err(|e| format!("publisher task panicked: {e}"))??;
        for (target, n) in sent {
            *expected.entry(target).or_default() += n;
        }
    }
    for (u, t, sub) in &mut subs {
        let who = format!("user u{u} tab {t}");
        let mut last_seen: HashMap<String, usize> = HashMap::new();
        for _ in 0..expected.get(u).copied().unwrap_or(0) {
            let data = label(&recv(sub, &who).await?);
            let mut parts = data.split('/');
            let (target, publisher, seq) = (parts.next(), parts.next(), parts.next());
            ensure!(
                target == Some(u.to_string().as_str()),
                "{who} received {data:?}, an event for another user"
            );
            let publisher = publisher.unwrap_or_default().to_owned();
            let seq: usize = seq.and_then(|s| s.parse().ok()).unwrap_or(0);
            if let Some(prev) = last_seen.insert(publisher.clone(), seq) {
                ensure!(
                    seq > prev,
                    "{who}: publisher {publisher}'s events arrived out of order ({prev} then {seq})"
                );
            }
        }
        let own = Audience::user(user(&ns, &format!("u{u}")));
        expect_nothing_before_marker(&*hub, sub, &own, &who).await?;
    }
    Ok(())
}

async fn full_queue_never_blocks_publish_and_lags<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let p = Principal::new(user(&ns, "slow"));
    let mut slow = subscribe(&*hub, &p, 4).await?;
    let mut fast = subscribe(&*hub, &p, 1_000).await?;
    let audience = Audience::user(p.user().clone());
    let publishing = async {
        for i in 0..100 {
            publish(&*hub, &audience, &event(&format!("e{i}"))).await?;
        }
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), publishing).await {
        Ok(result) => result?,
        Err(_) => return Err("publishing 100 events to a user with a full, unread queue took over 5 s: publish must not wait for subscribers".into()),
    }
    for i in 0..100 {
        let got = label(&recv(&mut fast, "the fast subscriber").await?);
        ensure!(
            got == format!("e{i}"),
            "the fast subscriber expected e{i}, got {got:?}: a slow subscriber of the same user must not affect it"
        );
    }
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, slow.recv()).await {
            Ok(Ok(_)) => delivered += 1,
            Ok(Err(RecvError::Lagged)) => break,
            Ok(Err(other)) => {
                return Err(format!("the slow subscriber expected Lagged, got {other}"));
            }
            Err(_) => {
                return Err(format!(
                    "the slow subscriber (capacity 4) received {delivered} events and then neither more nor Lagged: a full queue must lag"
                ));
            }
        }
        ensure!(
            delivered <= 4,
            "the slow subscriber received {delivered} events with a queue of 4: the queue is not bounded"
        );
    }
    match tokio::time::timeout(RECV_TIMEOUT, slow.recv()).await {
        Ok(Err(RecvError::Closed)) => Ok(()),
        other => Err(format!(
            "after Lagged the subscription must be closed, got {other:?}"
        )),
    }
}

async fn a_keyed_event_replaces_its_undelivered_predecessor<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    keyed_events_conflate(&*hub, &*hub, &ns).await
}

async fn conflation_keys_travel_between_nodes<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    keyed_events_conflate(&*nodes[0], &*nodes[1], &ns).await
}

/// 201 events, 200 of them under two conflation keys, to a queue of 4 that
/// is not read meanwhile: it must not lag, and must deliver each key's
/// latest value, in order, before the final unkeyed event.
async fn keyed_events_conflate<H: Hub>(publisher: &H, node: &H, ns: &str) -> Result<(), String> {
    let p = Principal::new(user(ns, "slow"));
    let mut slow = subscribe(node, &p, 4).await?;
    let audience = Audience::user(p.user().clone());
    for i in 0..100 {
        for key in ["progress", "count"] {
            let keyed = Event::builder()
                .event("check")
                .data(format!("{key} {i}"))
                .conflate(key)
                .build()
                .map_err(|e| e.to_string())?;
            publish(publisher, &audience, &keyed).await?;
        }
    }
    publish(publisher, &audience, &event("end")).await?;
    let mut last = HashMap::new();
    loop {
        let got = match tokio::time::timeout(RECV_TIMEOUT, slow.recv()).await {
            Ok(Ok(got)) => label(&got),
            Ok(Err(error)) => {
                return Err(format!(
                    "a queue of 4 fed 200 events under 2 conflation keys failed with {error}: an event with a key must replace the undelivered one with that key"
                ));
            }
            Err(_) => return Err("the final event did not arrive".into()),
        };
        if got == "end" {
            break;
        }
        let (key, n) = got
            .split_once(' ')
            .and_then(|(key, n)| Some((key.to_owned(), n.parse::<u32>().ok()?)))
            .ok_or_else(|| format!("received {got:?}, which was not sent"))?;
        if let Some(previous) = last.insert(key.clone(), n) {
            ensure!(
                n > previous,
                "{key} {n} arrived after {key} {previous}: conflation must keep order"
            );
        }
    }
    for key in ["progress", "count"] {
        ensure!(
            last.get(key) == Some(&99),
            "the latest {key} (99) never arrived; last seen {:?}",
            last.get(key)
        );
    }
    Ok(())
}

async fn drop_unregisters<H: Hub>(hub: Shared<H>, ns: String) -> Result<(), String> {
    let before = hub.stats().subscriptions;
    let p = Principal::new(user(&ns, "gone"))
        .with_groups([user(&ns, "g")])
        .with_topics([user(&ns, "t")]);
    let sub = subscribe(&*hub, &p, 4).await?;
    ensure!(
        hub.stats().subscriptions == before + 1,
        "Hub::stats().subscriptions went from {before} to {} on subscribe; it must count registrations so leaks can be seen",
        hub.stats().subscriptions
    );
    drop(sub);
    wait_for_subscriptions(&*hub, before).await?;
    for audience in [
        Audience::user(p.user().clone()),
        Audience::group(user(&ns, "g")),
        Audience::topic(user(&ns, "t")),
        Audience::Everyone,
    ] {
        publish(&*hub, &audience, &event("after-drop")).await?;
    }
    Ok(())
}

async fn churn_leaves_no_registration<H: Hub>(hub: Shared<H>, ns: String) -> Result<(), String> {
    let before = hub.stats().subscriptions;
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let hub = hub.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..2_500 {
                let p = Principal::new(user(&ns, &format!("w{worker}-{}", i % 50)))
                    .with_session(user(&ns, &format!("s{worker}-{i}")))
                    .with_groups([user(&ns, "g")]);
                let sub = hub
                    .subscribe(&p, 2)
                    .await
                    .map_err(|e| format!("subscribe failed: {e}"))?;
                if i % 10 == 0 {
                    let _ = hub
                        .publish(&Audience::group(user(&ns, "g")), &Event::comment("c"))
                        .await;
                }
                drop(sub);
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| format!("churn task panicked: {e}"))??;
    }
    wait_for_subscriptions(&*hub, before).await
}

async fn wait_for_subscriptions<H: Hub>(hub: &H, want: u64) -> Result<(), String> {
    for _ in 0..100 {
        if hub.stats().subscriptions == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!(
        "expected {want} registered subscriptions after dropping them, Hub::stats() reports {}: dropped subscriptions are leaking",
        hub.stats().subscriptions
    ))
}

async fn disconnect_is_delivered_like_an_event<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let leaving = Principal::new(user(&ns, "a")).with_session(user(&ns, "s1"));
    let staying = Principal::new(user(&ns, "a")).with_session(user(&ns, "s2"));
    let mut gone = subscribe(&*hub, &leaving, 8).await?;
    let mut kept = subscribe(&*hub, &staying, 8).await?;
    publish(
        &*hub,
        &Audience::session(user(&ns, "s1")),
        &Event::disconnect(),
    )
    .await?;
    let got = recv(&mut gone, "the logged-out session").await?;
    ensure!(
        got.is_disconnect(),
        "the session received {got:?} instead of the disconnect event"
    );
    expect_nothing_before_marker(
        &*hub,
        &mut kept,
        &Audience::session(user(&ns, "s2")),
        "the other session",
    )
    .await
}

async fn presence_of<H: Hub>(hub: &H, audience: &Audience) -> Result<u64, String> {
    hub.presence(audience)
        .await
        .map(|p| p.streams)
        .map_err(|e| format!("presence of {audience:?} failed: {e}"))
}

async fn presence_counts_open_streams_per_audience<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let tab = |session: &str| {
        Principal::new(user(&ns, "alice"))
            .with_session(user(&ns, session))
            .with_groups([user(&ns, "org")])
            .with_topics([user(&ns, "news")])
    };
    let alice = Audience::user(user(&ns, "alice"));
    ensure!(
        presence_of(&*hub, &alice).await? == 0,
        "a user with no stream is counted online"
    );
    let one = subscribe(&*hub, &tab("s1"), 8).await?;
    let two = subscribe(&*hub, &tab("s2"), 8).await?;
    let bob = subscribe(&*hub, &Principal::new(user(&ns, "bob")), 8).await?;
    for (audience, expected) in [
        (alice.clone(), 2),
        (Audience::session(user(&ns, "s1")), 1),
        (Audience::group(user(&ns, "org")), 2),
        (Audience::topic(user(&ns, "news")), 2),
        (Audience::user(user(&ns, "bob")), 1),
        (Audience::Connection(one.id()), 1),
        (Audience::user(user(&ns, "nobody")), 0),
    ] {
        let got = presence_of(&*hub, &audience).await?;
        ensure!(
            got == expected,
            "presence of {audience:?} is {got}, expected {expected}"
        );
    }
    let everyone = presence_of(&*hub, &Audience::Everyone).await?;
    ensure!(
        everyone >= 3,
        "presence of everyone is {everyone} with 3 streams open"
    );
    // Who is online, listed as presence counts them.
    let org = Audience::group(user(&ns, "org"));
    let listed = members_of(&*hub, &org, None, 10).await?;
    ensure!(
        listed == [(user(&ns, "alice"), 2)],
        "members of the org are {listed:?}, expected alice with 2 streams"
    );
    let session = members_of(&*hub, &Audience::session(user(&ns, "s2")), None, 10).await?;
    ensure!(
        session == [(user(&ns, "alice"), 1)],
        "members of a session are {session:?}"
    );
    let everyone = members_of(&*hub, &Audience::Everyone, None, 100_000).await?;
    for (name, streams) in [("alice", 2), ("bob", 1)] {
        ensure!(
            everyone.contains(&(user(&ns, name), streams)),
            "members of everyone lack {name} with {streams}: {everyone:?}"
        );
    }
    ensure!(
        everyone.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "members are not in user id order"
    );
    // Paged: after alice, one at most; bob (ns-bob sorts after ns-alice).
    let after = sse_core::UserId::from(user(&ns, "alice"));
    let page = members_of(&*hub, &Audience::Everyone, Some(&after), 1).await?;
    ensure!(
        page.len() == 1 && page[0].0 > user(&ns, "alice"),
        "the page after alice is {page:?}"
    );
    drop(one);
    ensure!(
        presence_of(&*hub, &alice).await? == 1,
        "a dropped subscription is still counted"
    );
    drop((two, bob));
    for audience in [alice, Audience::group(user(&ns, "org"))] {
        let got = presence_of(&*hub, &audience).await?;
        ensure!(
            got == 0,
            "presence of {audience:?} is {got} after every stream closed"
        );
    }
    let listed = members_of(&*hub, &org, None, 10).await?;
    ensure!(
        listed.is_empty(),
        "members of the org are {listed:?} after every stream closed"
    );
    Ok(())
}

/// `hub.members(..)` as (user, streams) pairs.
async fn members_of<H: Hub>(
    hub: &H,
    audience: &Audience,
    after: Option<&sse_core::UserId>,
    limit: usize,
) -> Result<Vec<(String, u64)>, String> {
    let members = hub
        .members(audience, after, limit)
        .await
        .map_err(|e| format!("members of {audience:?} failed: {e}"))?;
    Ok(members
        .into_iter()
        .map(|member| (member.user.as_str().to_owned(), member.streams))
        .collect())
}

/// Waits up to 10 s for `audience`'s presence, asked of `node`, to be
/// `expected`.
async fn presence_becomes<H: Hub>(
    node: &H,
    audience: &Audience,
    expected: u64,
    what: &str,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = presence_of(node, audience).await?;
        if got == expected {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{what}: presence is {got} after 10 s, expected {expected}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn presence_spans_nodes<H: Hub>(nodes: Nodes<H>, ns: String) -> Result<(), String> {
    let alice = Principal::new(user(&ns, "alice")).with_groups([user(&ns, "org")]);
    let on_a = subscribe(&*nodes[0], &alice, 8).await?;
    let on_b = subscribe(&*nodes[1], &alice, 8).await?;
    let user_audience = Audience::user(user(&ns, "alice"));
    let group = Audience::group(user(&ns, "org"));
    for (i, node) in nodes.iter().enumerate() {
        presence_becomes(
            &**node,
            &user_audience,
            2,
            &format!("node {i} counting alice's two streams on two nodes"),
        )
        .await?;
        presence_becomes(
            &**node,
            &group,
            2,
            &format!("node {i} counting the org's streams"),
        )
        .await?;
    }
    // Listed on every node: bob on node 2, alice on nodes 0 and 1.
    let bob = Principal::new(user(&ns, "bob")).with_groups([user(&ns, "org")]);
    let on_c = subscribe(&*nodes[2], &bob, 8).await?;
    for (i, node) in nodes.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listed = members_of(&**node, &group, None, 10).await?;
            if listed == [(user(&ns, "alice"), 2), (user(&ns, "bob"), 1)] {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "node {i} lists the org's members as {listed:?} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(on_c);
    drop(on_a);
    presence_becomes(
        &*nodes[2],
        &user_audience,
        1,
        "node 2 after node 0's stream closed",
    )
    .await?;
    drop(on_b);
    presence_becomes(
        &*nodes[2],
        &user_audience,
        0,
        "node 2 after every stream closed",
    )
    .await
}

/// Appends one durable event per audience to `log`; returns them stored.
async fn durable(log: &InMemoryLog, audiences: &[Audience]) -> Result<Vec<Event>, String> {
    let items: Vec<(Audience, Event)> = audiences
        .iter()
        .enumerate()
        .map(|(i, a)| (a.clone(), event(&format!("durable-{i}"))))
        .collect();
    log.append(&items)
        .await
        .map_err(|e| format!("appending to the test log failed: {e}"))
}

/// Receives the next durable event, accepting a `Missed` signal in place
/// of a position that was not delivered (the stream then catches up from
/// its log); returns `None` for the signal.
async fn recv_durable(sub: &mut Subscription, who: &str) -> Result<Option<Event>, String> {
    match tokio::time::timeout(RECV_TIMEOUT, sub.recv()).await {
        Ok(Ok(event)) => Ok(Some(event)),
        Ok(Err(RecvError::Missed)) => Ok(None),
        Ok(Err(error)) => Err(format!("{who}: receive failed: {error}")),
        Err(_) => Err(format!("{who}: expected an event within {RECV_TIMEOUT:?}")),
    }
}

async fn durable_events_arrive_in_position_order_without_gaps<H: Hub>(
    hub: Shared<H>,
    ns: String,
) -> Result<(), String> {
    let log = InMemoryLog::new();
    hub.attach_log(Arc::new(log.clone()));
    let p = Principal::new(user(&ns, "u")).with_groups([user(&ns, "g")]);
    let mut sub = subscribe(&*hub, &p, 64).await?;
    let user_audience = Audience::user(p.user().clone());
    let group = Audience::group(user(&ns, "g"));
    let events = durable(
        &log,
        &[user_audience.clone(), group.clone(), user_audience.clone()],
    )
    .await?;
    // Three publishers finish in another order than they appended.
    publish(&*hub, &user_audience, &events[2]).await?;
    publish(&*hub, &user_audience, &events[0]).await?;
    publish(&*hub, &group, &events[1]).await?;
    for want in &events {
        let got = recv(&mut sub, "the subscriber").await?;
        ensure!(
            got.cursor() == want.cursor(),
            "received {:?} where position {:?} was due: durable events must arrive in log order",
            got.cursor(),
            want.cursor()
        );
    }
    // A position whose publish never comes (its publisher crashed): the hub
    // reads it from the attached log, or tells the subscription it missed
    // events; it never delivers the next one as if nothing were missing.
    let more = durable(&log, &[user_audience.clone(), user_audience.clone()]).await?;
    publish(&*hub, &user_audience, &more[1]).await?;
    match recv_durable(&mut sub, "the subscriber").await? {
        Some(got) if got.cursor() == more[0].cursor() => {
            let next = recv(&mut sub, "the subscriber").await?;
            ensure!(
                next.cursor() == more[1].cursor(),
                "after the filled position came {:?}",
                next.cursor()
            );
        }
        None => {
            let next = recv(&mut sub, "the subscriber").await?;
            ensure!(
                next.cursor() == more[1].cursor(),
                "after the missed signal came {:?}",
                next.cursor()
            );
        }
        Some(other) => {
            return Err(format!(
                "position {:?} was delivered while {:?} below it never arrived and was not read from the log",
                other.cursor(),
                more[0].cursor()
            ));
        }
    }
    Ok(())
}

type Nodes<H> = [Arc<H>; 3];

async fn durable_events_reach_every_node_in_position_order<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    let log = InMemoryLog::new();
    for node in &nodes {
        node.attach_log(Arc::new(log.clone()));
    }
    let u = Principal::new(user(&ns, "u"));
    let g = Principal::new(user(&ns, "other")).with_groups([user(&ns, "g")]);
    let mut on_b = subscribe(&*nodes[1], &u, 256).await?;
    let mut on_c = subscribe(&*nodes[2], &g, 256).await?;
    let audiences: Vec<Audience> = (0..60)
        .map(|i| match i % 3 {
            0 => Audience::user(u.user().clone()),
            1 => Audience::group(user(&ns, "g")),
            _ => Audience::Everyone,
        })
        .collect();
    let events = durable(&log, &audiences).await?;
    // Published from every node at once, each node in reverse order.
    let mut publishers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let mine: Vec<(Audience, Event)> = audiences
            .iter()
            .cloned()
            .zip(events.iter().cloned())
            .enumerate()
            .filter(|(i, _)| i % 3 == n)
            .map(|(_, item)| item)
            .rev()
            .collect();
        publishers.push(tokio::spawn(async move {
            for (audience, event) in mine {
                publish(&*node, &audience, &event).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for publisher in publishers {
        publisher
            .await
            .map_err(|e| format!("publisher panicked: {e}"))??;
    }
    for (sub, who, wanted) in [
        (&mut on_b, "the user on node B", [0usize, 2]),
        (&mut on_c, "the group member on node C", [1, 2]),
    ] {
        let expected: Vec<Option<sse_core::Cursor>> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted.contains(&(i % 3)))
            .map(|(_, e)| e.cursor())
            .collect();
        for want in expected {
            let got = recv(sub, who).await?;
            ensure!(
                got.cursor() == want,
                "{who} received {:?} where {want:?} was due: durable events must reach every node and arrive in log order",
                got.cursor()
            );
        }
    }
    Ok(())
}

async fn every_audience_reaches_other_nodes<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    let p = Principal::new(user(&ns, "u"))
        .with_session(user(&ns, "s"))
        .with_groups([user(&ns, "g")])
        .with_topics([user(&ns, "t")]);
    let mut on_b = subscribe(&*nodes[1], &p, 64).await?;
    let mut on_c = subscribe(&*nodes[2], &p, 64).await?;
    let audiences = [
        Audience::user(p.user().clone()),
        Audience::session(user(&ns, "s")),
        Audience::group(user(&ns, "g")),
        Audience::topic(user(&ns, "t")),
        Audience::Everyone,
    ];
    for audience in &audiences {
        publish(&*nodes[0], audience, &event(&format!("{audience:?}"))).await?;
        for (sub, who) in [(&mut on_b, "node B"), (&mut on_c, "node C")] {
            let got = recv(sub, who).await?;
            ensure!(
                label(&got) == format!("{audience:?}"),
                "{who} got {:?} for a publish to {audience:?} on node A",
                label(&got)
            );
        }
    }
    Ok(())
}

async fn connection_ids_are_unique_across_nodes<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut subs = Vec::new();
    for i in 0..300 {
        let node = &nodes[i % 3];
        let sub = subscribe(&**node, &Principal::new(user(&ns, "u")), 1).await?;
        ensure!(
            seen.insert(sub.id()),
            "connection id {} was handed out twice across nodes",
            sub.id()
        );
        subs.push(sub);
    }
    Ok(())
}

async fn a_connection_audience_reaches_only_that_connection<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    let p = Principal::new(user(&ns, "u"));
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(subscribe(&**node, &p, 16).await?);
        subs.push(subscribe(&**node, &p, 16).await?);
    }
    let target = subs[3].id();
    publish(
        &*nodes[0],
        &Audience::Connection(target),
        &event("just-you"),
    )
    .await?;
    let got = recv(&mut subs[3], "the addressed connection").await?;
    ensure!(
        label(&got) == "just-you",
        "the addressed connection got {:?}",
        label(&got)
    );
    for (i, sub) in subs.iter_mut().enumerate() {
        if i == 3 {
            continue;
        }
        let id = sub.id();
        publish(&*nodes[0], &Audience::Connection(id), &event("marker")).await?;
        let got = recv(sub, &format!("connection {i}")).await?;
        ensure!(
            label(&got) == "marker",
            "connection {i} ({id}) received {:?}, addressed to connection {target}",
            label(&got)
        );
    }
    Ok(())
}

async fn disconnect_reaches_every_node<H: Hub>(nodes: Nodes<H>, ns: String) -> Result<(), String> {
    let p = Principal::new(user(&ns, "u")).with_session(user(&ns, "s"));
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(subscribe(&**node, &p, 8).await?);
    }
    publish(
        &*nodes[0],
        &Audience::session(user(&ns, "s")),
        &Event::disconnect(),
    )
    .await?;
    for (i, sub) in subs.iter_mut().enumerate() {
        let got = recv(sub, &format!("the session's stream on node {i}")).await?;
        ensure!(
            got.is_disconnect(),
            "node {i} delivered {got:?} instead of the disconnect event"
        );
    }
    Ok(())
}

async fn connection_ids_are_unique<H: Hub>(hub: Shared<H>, ns: String) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut subs = Vec::new();
    for i in 0..500 {
        let sub = subscribe(&*hub, &Principal::new(user(&ns, &format!("u{}", i % 7))), 1).await?;
        ensure!(
            seen.insert(sub.id()),
            "connection id {} was handed out twice",
            sub.id()
        );
        subs.push(sub);
    }
    Ok(())
}

/// Ids an app takes from its users (names, a token's `sub`) may hold line
/// breaks, colons, NULs and wildcards: an event for such an audience,
/// durable or not, reaches that audience on every node, byte for byte, and
/// never the user whose id it starts with.
async fn hostile_ids_never_reach_another_audience<H: Hub>(
    nodes: Nodes<H>,
    ns: String,
) -> Result<(), String> {
    let log = InMemoryLog::new();
    for node in &nodes {
        node.attach_log(Arc::new(log.clone()));
    }
    let victim = user(&ns, "x");
    let victim_principal = Principal::new(victim.clone())
        .with_session(victim.clone())
        .with_groups([victim.clone()])
        .with_topics([victim.clone()]);
    let mut on_b = subscribe(&*nodes[1], &victim_principal, 256).await?;
    let hostile = [
        format!("{victim}\ndata: evil"),
        format!("{victim}\n\ndata: evil\n"),
        format!("{victim}\r\ndata: evil"),
        format!("{victim}\0"),
        format!("{victim}:"),
        format!("{victim}.>"),
        format!("{victim} *"),
        format!("u:{victim}"),
    ];
    let mut audiences = Vec::new();
    for name in &hostile {
        audiences.extend([
            Audience::user(name.clone()),
            Audience::session(name.clone()),
            Audience::group(name.clone()),
            Audience::topic(name.clone()),
        ]);
    }
    // The attacker's own stream, on node C: it gets what is addressed to it.
    let attacker = Principal::new(hostile[0].clone());
    let mut on_c = subscribe(&*nodes[2], &attacker, 256).await?;
    for audience in &audiences {
        publish(&*nodes[0], audience, &event("evil")).await?;
    }
    let durable_audiences: Vec<Audience> = audiences
        .iter()
        .filter(|a| a.is_durable())
        .cloned()
        .collect();
    let stored = durable(&log, &durable_audiences).await?;
    for (audience, event) in durable_audiences.iter().zip(&stored) {
        publish(&*nodes[0], audience, event).await?;
    }
    // Nothing of that reached the victim: the next events are the markers.
    let markers = [
        Audience::user(victim.clone()),
        Audience::session(victim.clone()),
        Audience::group(victim.clone()),
        Audience::topic(victim.clone()),
    ];
    for audience in &markers {
        expect_nothing_before_marker(&*nodes[0], &mut on_b, audience, "the victim on node B")
            .await?;
    }
    let mut expected = vec![("evil".to_owned(), event("evil").frame().clone())];
    expected.extend(
        durable_audiences
            .iter()
            .zip(&stored)
            .filter(|(a, _)| **a == Audience::user(hostile[0].clone()))
            .map(|(_, e)| (label(e), e.frame().clone())),
    );
    for (want, frame) in expected {
        let got = recv(
            &mut on_c,
            "the stream of the user with a line break in their id",
        )
        .await?;
        ensure!(
            got.frame() == &frame,
            "the user with a line break in their id got {:?} where {want:?} ({:?}) was due",
            String::from_utf8_lossy(got.frame()),
            String::from_utf8_lossy(&frame)
        );
    }
    Ok(())
}
