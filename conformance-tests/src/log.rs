//! The [`EventLog`] suite: run it against your log from a `#[tokio::test]`.
//!
//! It checks exactly what streams rely on (see `sse_core::log`): positions
//! dense and consecutive after the head, visible in order under concurrent
//! appenders, the principal's audiences and no other replayed in order,
//! cursors from another history or beyond the head answered with
//! `HistoryGone`, and retention that never skips silently.
//!
//! The factory receives the [`Retention`] a check needs (most use
//! [`Retention::unlimited`]) and returns a log honouring it. A log pruned by
//! something else (a database job) opts out of the retention checks with
//! [`check_with`] and `Options { retention: false }`.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use sse_core::InMemoryLog;
//! sse_conformance::log::run(|retention| async move { InMemoryLog::with_retention(retention) }).await;
//! # }
//! ```
//!
//! Every check uses audience names unique to the run and positions relative
//! to the head it found, so logs over a shared database work without
//! cleanup.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sse_core::log::{LogRecord, Replay};
use sse_core::{Audience, Cursor, Event, EventLog, Principal, Retention, StoreError};

use crate::report::{Report, ensure, run_id};

const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Concurrent appenders in the ordering check.
pub const CONCURRENT_APPENDERS: usize = 8;

/// Which checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether to check retention by count and by age (the log prunes
    /// itself). Turn it off when something outside prunes the log.
    pub retention: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { retention: true }
    }
}

/// Runs every check and panics with the table if any failed.
pub async fn run<L, F, Fut>(make_log: F)
where
    L: EventLog,
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = L>,
{
    check_with(make_log, Options::default())
        .await
        .assert_passed();
}

/// Runs every check and returns the report.
pub async fn check<L, F, Fut>(make_log: F) -> Report
where
    L: EventLog,
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = L>,
{
    check_with(make_log, Options::default()).await
}

/// Runs the checks `options` selects and returns the report.
pub async fn check_with<L, F, Fut>(make_log: F, options: Options) -> Report
where
    L: EventLog,
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = L>,
{
    let run = run_id();
    let mut report = Report::default();
    macro_rules! checks {
        ($($name:ident $(($retention:expr))?),* $(,)?) => {$(
            #[allow(unused_mut, unused_assignments)]
            let mut retention = Retention::unlimited();
            $(retention = $retention;)?
            let log = Arc::new(make_log(retention).await);
            let ns = format!("{run}-{}", stringify!($name));
            report.run(concat!("log::", stringify!($name)), CHECK_TIMEOUT, || $name(log, ns)).await;
        )*};
    }
    checks!(
        append_assigns_consecutive_positions_after_the_head,
        stored_events_carry_their_cursor_and_keep_their_fields,
        a_replay_holds_the_principals_audiences_and_no_other,
        a_replay_from_any_cursor_is_ordered_and_complete,
        a_replay_respects_the_limit,
        a_cursor_from_another_history_or_beyond_the_head_is_gone,
        read_returns_every_event_in_order,
        ephemeral_audiences_and_events_with_ids_are_refused,
        a_batch_is_consecutive_and_all_or_nothing,
        concurrent_appenders_keep_positions_dense_and_visible_in_order,
    );
    if options.retention {
        checks!(
            history_beyond_the_count_limit_is_gone(Retention::unlimited().max_events(5)),
            history_beyond_the_age_limit_is_gone(
                Retention::unlimited().max_age(Duration::from_millis(400))
            ),
        );
    }
    report
}

type Shared<L> = Arc<L>;

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

fn fail(what: &str) -> impl FnOnce(StoreError) -> String + '_ {
    move |e| format!("{what} failed: {e}")
}

fn position(event: &Event) -> Result<u64, String> {
    event
        .cursor()
        .map(Cursor::position)
        .ok_or_else(|| format!("a stored event has no cursor as its id: {event:?}"))
}

async fn append<L: EventLog>(log: &L, items: &[(Audience, Event)]) -> Result<Vec<Event>, String> {
    log.append(items).await.map_err(fail("append"))
}

async fn replay<L: EventLog>(
    log: &L,
    principal: &Principal,
    after: Cursor,
    limit: usize,
) -> Result<(Vec<Event>, Cursor), String> {
    match log
        .since(principal, after, limit)
        .await
        .map_err(fail("since"))?
    {
        Replay::Events { events, head } => Ok((events, head)),
        Replay::HistoryGone { head } => Err(format!(
            "since({after}) answered HistoryGone (head {head}) where the history is kept"
        )),
    }
}

async fn append_assigns_consecutive_positions_after_the_head<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let head = log.head().await.map_err(fail("head"))?;
    let audience = Audience::user(format!("{ns}-u"));
    let mut expected = head.position();
    for i in 0..10 {
        let stored = append(&*log, &[(audience.clone(), event(&i.to_string()))]).await?;
        ensure!(
            stored.len() == 1,
            "append of one event returned {}",
            stored.len()
        );
        expected += 1;
        let cursor = stored[0].cursor();
        ensure!(
            cursor == Some(head.epoch().at(expected)),
            "the event after position {} got {cursor:?}; positions must be consecutive from the head",
            expected - 1
        );
        let now = log.head().await.map_err(fail("head"))?;
        ensure!(
            now.position() >= expected && now.epoch() == head.epoch(),
            "head is {now} right after position {expected} was appended"
        );
    }
    Ok(())
}

async fn stored_events_carry_their_cursor_and_keep_their_fields<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let original = Event::builder()
        .event("invoice.paid")
        .data("{\"a\":1}\nsecond line ünïcødé")
        .comment("note")
        .build()
        .map_err(|e| e.to_string())?;
    let stored = append(
        &*log,
        &[(Audience::topic(format!("{ns}-t")), original.clone())],
    )
    .await?;
    let parsed = crate::parser::events(stored[0].frame());
    let cursor = stored[0].cursor().ok_or("the stored event has no cursor")?;
    ensure!(
        parsed.len() == 1
            && parsed[0].event_type == "invoice.paid"
            && parsed[0].data == "{\"a\":1}\nsecond line ünïcødé"
            && parsed[0].last_event_id == cursor.to_string(),
        "the stored event parses as {parsed:?}"
    );
    let reader = Principal::new(format!("{ns}-r")).with_topics([format!("{ns}-t")]);
    let (events, _) = replay(&*log, &reader, cursor.epoch().at(cursor.position() - 1), 10).await?;
    ensure!(
        events.first().map(|e| e.frame()) == Some(stored[0].frame()),
        "the replayed event differs from the one append returned: {events:?}"
    );
    Ok(())
}

async fn a_replay_holds_the_principals_audiences_and_no_other<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let n = |s: &str| format!("{ns}-{s}");
    let start = log.head().await.map_err(fail("head"))?;
    append(
        &*log,
        &[
            (Audience::user(n("bob")), event("mine")),
            (Audience::user(n("eve")), event("eve")),
            (Audience::group(n("acme")), event("my group")),
            (Audience::group(n("other")), event("other group")),
            (Audience::topic(n("deploys")), event("my topic")),
            (Audience::topic(n("payroll")), event("other topic")),
            (Audience::topic(format!("u:{}", n("bob"))), event("spoof")),
            (Audience::Everyone, event("everyone")),
        ],
    )
    .await?;
    let bob = Principal::new(n("bob"))
        .with_session(n("s"))
        .with_groups([n("acme")])
        .with_topics([n("deploys")]);
    let (events, _) = replay(&*log, &bob, start, 100).await?;
    // Other checks may append to Everyone concurrently on a shared log:
    // look at this run's labels only.
    let labels: Vec<String> = events.iter().map(label).collect();
    let mine: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| {
            [
                "mine",
                "eve",
                "my group",
                "other group",
                "my topic",
                "other topic",
                "spoof",
            ]
            .contains(l)
        })
        .collect();
    ensure!(
        mine == ["mine", "my group", "my topic"],
        "bob's replay holds {mine:?}, expected his user, group and topic events in order"
    );
    ensure!(
        labels.iter().any(|l| l == "everyone"),
        "bob's replay lacks the event to everyone: {labels:?}"
    );
    Ok(())
}

async fn a_replay_from_any_cursor_is_ordered_and_complete<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let audience = Audience::group(format!("{ns}-g"));
    let member = Principal::new(format!("{ns}-m")).with_groups([format!("{ns}-g")]);
    let start = log.head().await.map_err(fail("head"))?;
    let mut all = Vec::new();
    for i in 0..12 {
        all.extend(append(&*log, &[(audience.clone(), event(&i.to_string()))]).await?);
        // Interleave other audiences, so positions are not consecutive
        // within the group.
        append(&*log, &[(Audience::user(format!("{ns}-x{i}")), event("x"))]).await?;
    }
    let (got, head) = replay(&*log, &member, start, 1_000).await?;
    // Events to everyone from elsewhere may interleave on a shared log.
    let got: Vec<&Event> = got.iter().filter(|e| all.contains(e)).collect();
    ensure!(
        got.len() == all.len() && got.iter().zip(&all).all(|(a, b)| *a == b),
        "a replay from the start returned {} of the group's {} events, or out of order",
        got.len(),
        all.len()
    );
    ensure!(
        head.position() >= position(all.last().ok_or("nothing appended")?)?,
        "the replay's head {head} is below its last event"
    );
    for cut in [1, 5, 11] {
        let after = all[cut - 1].cursor().ok_or("no cursor")?;
        let (rest, _) = replay(&*log, &member, after, 1_000).await?;
        let rest: Vec<Event> = rest.into_iter().filter(|e| all.contains(e)).collect();
        ensure!(
            rest == all[cut..],
            "a replay after the group's event {cut} returned {} events, expected {}",
            rest.len(),
            all.len() - cut
        );
    }
    let last = all.last().and_then(Event::cursor).ok_or("no cursor")?;
    let (none, _) = replay(&*log, &member, last, 1_000).await?;
    let none: Vec<&Event> = none
        .iter()
        .filter(|e| !label(e).is_empty() && all.contains(e))
        .collect();
    ensure!(
        none.is_empty(),
        "a replay after the last event returned {none:?}"
    );
    Ok(())
}

async fn a_replay_respects_the_limit<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let audience = Audience::user(format!("{ns}-u"));
    let principal = Principal::new(format!("{ns}-u"));
    let start = log.head().await.map_err(fail("head"))?;
    let mut all = Vec::new();
    for i in 0..12 {
        all.extend(append(&*log, &[(audience.clone(), event(&i.to_string()))]).await?);
    }
    let (five, head) = replay(&*log, &principal, start, 5).await?;
    ensure!(
        five == all[..5],
        "a replay with limit 5 must return the 5 oldest, got {} events",
        five.len()
    );
    ensure!(
        Some(head) == all[4].cursor(),
        "a replay cut by its limit must end its head at its last event ({:?}), got {head}",
        all[4].cursor()
    );
    Ok(())
}

async fn a_cursor_from_another_history_or_beyond_the_head_is_gone<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let principal = Principal::new(format!("{ns}-u"));
    append(&*log, &[(Audience::user(format!("{ns}-u")), event("x"))]).await?;
    let head = log.head().await.map_err(fail("head"))?;
    let other_epoch = sse_core::log::Epoch::from_bits(head.epoch().get() ^ 1);
    for after in [other_epoch.at(1), head.epoch().at(head.position() + 1_000)] {
        match log
            .since(&principal, after, 10)
            .await
            .map_err(fail("since"))?
        {
            Replay::HistoryGone { head: got } => ensure!(
                got.epoch() == head.epoch() && got.position() >= head.position(),
                "HistoryGone carries head {got}, expected at least {head}"
            ),
            other => {
                return Err(format!(
                    "since({after}) must be HistoryGone (the cursor is not from this history), got {other:?}"
                ));
            }
        }
    }
    let records = log
        .read(other_epoch.at(0), 10)
        .await
        .map_err(fail("read"))?;
    ensure!(
        records.is_empty(),
        "read from another epoch returned {} records",
        records.len()
    );
    Ok(())
}

async fn read_returns_every_event_in_order<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let start = log.head().await.map_err(fail("head"))?;
    let items = vec![
        (Audience::user(format!("{ns}-a")), event("1")),
        (Audience::group(format!("{ns}-b")), event("2")),
        (Audience::topic(format!("{ns}-c")), event("3")),
    ];
    let stored = append(&*log, &items).await?;
    let records = log.read(start, 10_000).await.map_err(fail("read"))?;
    let mine: Vec<&LogRecord> = records
        .iter()
        .filter(|r| stored.contains(&r.event))
        .collect();
    ensure!(
        mine.len() == 3
            && mine
                .iter()
                .zip(&items)
                .all(|(record, (audience, _))| &record.audience == audience),
        "read returned {mine:?} for the three events appended, expected them with their audiences"
    );
    let positions: Vec<u64> = records
        .iter()
        .map(|r| r.event.cursor().map_or(0, Cursor::position))
        .collect();
    ensure!(
        positions.windows(2).all(|w| w[1] == w[0] + 1)
            && positions.first() == Some(&(start.position() + 1)),
        "read after {start} returned positions {positions:?}, expected consecutive ones from {}",
        start.position() + 1
    );
    let first = stored[0].cursor().ok_or("no cursor")?;
    let one = log.read(first, 1).await.map_err(fail("read"))?;
    ensure!(
        one.len() == 1 && one[0].event.cursor() == Some(first.next()),
        "read(after, 1) returned {one:?}"
    );
    Ok(())
}

async fn ephemeral_audiences_and_events_with_ids_are_refused<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let head = log.head().await.map_err(fail("head"))?;
    let with_id = Event::builder()
        .id("7")
        .data("x")
        .build()
        .map_err(|e| e.to_string())?;
    for (audience, event, what) in [
        (
            Audience::session(format!("{ns}-s")),
            event("x"),
            "a session event",
        ),
        (
            Audience::Connection(sse_core::ConnectionId::new(1, 1)),
            event("x"),
            "a connection event",
        ),
        (
            Audience::user(format!("{ns}-u")),
            with_id,
            "an event with an id",
        ),
        (
            Audience::user(format!("{ns}-u")),
            Event::disconnect(),
            "a disconnect signal",
        ),
    ] {
        ensure!(
            log.append(&[(audience, event)]).await.is_err(),
            "{what} was stored"
        );
    }
    let after = log.head().await.map_err(fail("head"))?;
    let mine = log.read(head, 10_000).await.map_err(fail("read"))?;
    ensure!(
        !mine
            .iter()
            .any(|r| r.audience == Audience::user(format!("{ns}-u"))),
        "a refused append left an event behind (head went from {head} to {after})"
    );
    Ok(())
}

async fn a_batch_is_consecutive_and_all_or_nothing<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let audience = Audience::user(format!("{ns}-u"));
    let batch: Vec<(Audience, Event)> = (0..50)
        .map(|i| (audience.clone(), event(&i.to_string())))
        .collect();
    let stored = append(&*log, &batch).await?;
    ensure!(stored.len() == 50, "a batch of 50 stored {}", stored.len());
    let positions: Vec<u64> = stored.iter().map(position).collect::<Result<_, _>>()?;
    ensure!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "a batch got positions {positions:?}, expected consecutive ones"
    );
    let labels: Vec<String> = stored.iter().map(label).collect();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    ensure!(labels == expected, "a batch was stored out of order");
    let principal = Principal::new(format!("{ns}-u"));
    let before = log.head().await.map_err(fail("head"))?;
    let mut bad = batch[..3].to_vec();
    bad.push((Audience::session("s"), event("not durable")));
    ensure!(
        log.append(&bad).await.is_err(),
        "a batch with an ephemeral audience was stored"
    );
    let (after_bad, _) = replay(&*log, &principal, before, 100).await?;
    ensure!(
        after_bad.is_empty(),
        "a refused batch stored {} of its events",
        after_bad.len()
    );
    Ok(())
}

async fn concurrent_appenders_keep_positions_dense_and_visible_in_order<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    const PER_APPENDER: usize = 25;
    let start = log.head().await.map_err(fail("head"))?;
    let done = Arc::new(AtomicBool::new(false));
    // A reader follows `read(after)` while appenders run. A log that makes
    // positions visible out of order shows position n + 1 before n, and a
    // follower resuming after n + 1 would never see n.
    let reader = {
        let log = log.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut at = start;
            let mut seen = 0usize;
            loop {
                let finished = done.load(Ordering::SeqCst);
                for record in log.read(at, 1_000).await.map_err(fail("read"))? {
                    let cursor = record.event.cursor().ok_or("a record without a cursor")?;
                    ensure!(
                        cursor.position() == at.position() + 1,
                        "read after {at} returned position {}: a position became visible before the one below it",
                        cursor.position()
                    );
                    at = cursor;
                    seen += 1;
                }
                if finished {
                    return Ok::<_, String>((at, seen));
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut appenders = Vec::new();
    for w in 0..CONCURRENT_APPENDERS {
        let log = log.clone();
        let audience = Audience::user(format!("{ns}-w{w}"));
        appenders.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..PER_APPENDER {
                let stored = append(&*log, &[(audience.clone(), event(&i.to_string()))]).await?;
                mine.push(position(&stored[0])?);
            }
            Ok::<_, String>(mine)
        }));
    }
    let mut positions = Vec::new();
    for appender in appenders {
        let mine = appender
            .await
            .map_err(|e| format!("appender panicked: {e}"))??;
        ensure!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one appender's events got positions {mine:?}, not increasing"
        );
        positions.extend(mine);
    }
    done.store(true, Ordering::SeqCst);
    let (last, _) = reader
        .await
        .map_err(|e| format!("reader panicked: {e}"))??;
    positions.sort_unstable();
    let before = positions.len();
    positions.dedup();
    ensure!(
        positions.len() == before,
        "two events got the same position"
    );
    ensure!(
        last.position() >= *positions.last().unwrap_or(&0),
        "the follower stopped at {last}, before the last appended position {:?}",
        positions.last()
    );
    Ok(())
}

async fn history_beyond_the_count_limit_is_gone<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let audience = Audience::user(format!("{ns}-u"));
    let principal = Principal::new(format!("{ns}-u"));
    let start = log.head().await.map_err(fail("head"))?;
    let mut all = Vec::new();
    for i in 0..30 {
        all.extend(append(&*log, &[(audience.clone(), event(&i.to_string()))]).await?);
    }
    match log
        .since(&principal, start, 100)
        .await
        .map_err(fail("since"))?
    {
        Replay::HistoryGone { .. } => {}
        Replay::Events { events, .. } => {
            return Err(format!(
                "with retention of 5 events, a replay from before 30 appends returned {} events instead of HistoryGone",
                events.len()
            ));
        }
    }
    let tail_start = all[all.len() - 6].cursor().ok_or("no cursor")?;
    let (tail, _) = replay(&*log, &principal, tail_start, 100).await?;
    ensure!(
        tail == all[all.len() - 5..],
        "the newest 5 events must still replay after the one before them, got {}",
        tail.len()
    );
    Ok(())
}

async fn history_beyond_the_age_limit_is_gone<L: EventLog>(
    log: Shared<L>,
    ns: String,
) -> Result<(), String> {
    let audience = Audience::user(format!("{ns}-u"));
    let principal = Principal::new(format!("{ns}-u"));
    let start = log.head().await.map_err(fail("head"))?;
    let old = append(&*log, &[(audience.clone(), event("old"))]).await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let fresh = append(&*log, &[(audience.clone(), event("fresh"))]).await?;
    match log
        .since(&principal, start, 100)
        .await
        .map_err(fail("since"))?
    {
        Replay::HistoryGone { .. } => {}
        Replay::Events { events, .. } if events.first() == old.first() => {
            return Err("with a 400 ms age limit, an event 900 ms old was still replayed".into());
        }
        Replay::Events { .. } => {
            return Err(
                "a replay from before a pruned event returned events instead of HistoryGone".into(),
            );
        }
    }
    let after_old = old[0].cursor().ok_or("no cursor")?;
    let (events, _) = replay(&*log, &principal, after_old, 100).await?;
    ensure!(
        events == fresh,
        "a client that saw the pruned event must still replay the fresh one, got {} events",
        events.len()
    );
    Ok(())
}
