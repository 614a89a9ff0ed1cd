//! Who is online: the hub's counts, and join / leave events to the
//! audiences the app chose, sent once per user, not per tab.

mod common;

use std::time::Duration;

use common::{SECOND, start};
use sse_core::{Audience, Hub, Principal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_first_tab_announces_a_join_and_the_last_a_leave() {
    let f =
        start(|b| b.presence_events(|p| p.groups().iter().cloned().map(Audience::Group).collect()))
            .await;
    for (sid, user) in [("dana-1", "dana"), ("dana-2", "dana"), ("erin", "erin")] {
        f.sessions.insert(
            sid,
            Principal::new(user).with_session(sid).with_groups(["acme"]),
        );
    }
    let mut erin = f.open("erin").await;
    // Erin's own join went to the group, herself included.
    let own = erin.next_event(SECOND).await.unwrap();
    assert_eq!(own.event_type, "presence");
    assert_eq!(own.data, r#"{"user":"erin","online":true}"#);

    let first = f.open("dana-1").await;
    let joined = erin.next_event(SECOND).await.unwrap();
    assert_eq!(joined.event_type, "presence");
    assert_eq!(joined.data, r#"{"user":"dana","online":true}"#);
    let second = f.open("dana-2").await;
    let hub = f.sse.notifier().hub();
    assert_eq!(
        hub.presence(&Audience::user("dana")).await.unwrap().streams,
        2
    );
    assert_eq!(
        hub.presence(&Audience::group("acme"))
            .await
            .unwrap()
            .streams,
        3
    );

    // Closing one of two tabs is no news; closing the last is.
    drop(first);
    f.wait_for_active(2).await;
    drop(second);
    let left = erin.next_event(SECOND).await.unwrap();
    assert_eq!(left.event_type, "presence");
    assert_eq!(left.data, r#"{"user":"dana","online":false}"#);
    assert!(
        erin.next_event(Duration::from_millis(300)).await.is_err(),
        "a second tab's open or close was announced"
    );
    assert_eq!(
        hub.presence(&Audience::user("dana")).await.unwrap().streams,
        0
    );
}

#[tokio::test]
async fn without_the_option_no_presence_event_is_sent() {
    let f = start(|b| b).await;
    let mut alice = f.open("alice").await;
    let _bob = f.open("bob").await;
    f.notify("alice", "marker").await;
    assert_eq!(
        alice.next_event(SECOND).await.unwrap().event_type,
        "notification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_never_announce_a_join_or_a_leave() {
    let f =
        start(|b| b.presence_events(|p| p.groups().iter().cloned().map(Audience::Group).collect()))
            .await;
    for user in ["pia", "quin"] {
        f.sessions.insert(
            user,
            Principal::new(user)
                .with_session(user)
                .with_groups(["acme"]),
        );
    }
    let mut quin = f.open("quin").await;
    let own = quin.next_event(SECOND).await.unwrap();
    assert_eq!(own.data, r#"{"user":"quin","online":true}"#);
    for _ in 0..5 {
        let mut poll = sse_conformance::client::Request::get("/events?poll=1")
            .header("cookie", "sid=pia")
            .send(&f.addr())
            .await
            .unwrap();
        assert!(poll.wait_for_end(SECOND).await.unwrap());
    }
    assert!(
        quin.next_event(Duration::from_millis(500)).await.is_err(),
        "a poll was announced as a join or a leave"
    );
}
