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
//! The checks need `Hub::stats().subscriptions` to count registrations
//! (that is how leaks are seen) and events from one publisher to arrive in
//! the order published.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sse_core::{Audience, Event, Hub, Principal, RecvError, Subscription};

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
        let id = got.event_id().map(|id| id.get());
        ensure!(
            id == Some(i),
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
