//! Join and leave events: when a user's first stream opens, or their last
//! one closes, on any node, an `event: presence` with
//! `{"user":"alice","online":true}` goes to the audiences the app chose
//! (see [`SseServiceBuilder::presence_events`](crate::SseServiceBuilder::presence_events)).
//!
//! Decided from [`Hub::presence`](sse_core::Hub::presence) by one task per
//! service, in order, after streams open or close: on one node exactly one
//! event per change. Across nodes a hub counts other nodes' streams after a
//! short delay, and each node announces what it sees, so a user whose first
//! tabs open on two nodes at the same instant may be announced twice (and
//! likewise a leave). The events are ephemeral: a client learns the
//! current state by asking, then follows the events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use sse_core::{Audience, Event, Principal, UserId};
use tokio::sync::Notify;

use crate::service::Shared;

/// Chooses who hears about a principal coming online or going offline.
pub(crate) type PresenceAudiences = Arc<dyn Fn(&Principal) -> Vec<Audience> + Send + Sync>;

/// The name of join and leave events.
pub const PRESENCE_EVENT: &str = "presence";

#[derive(serde::Serialize)]
struct Change<'a> {
    user: &'a str,
    online: bool,
}

/// Decides join and leave events for one service. Streams only mark their
/// user as changed; one task per service then reads the user's presence
/// and publishes an event when it differs from what it last announced for
/// that user. Reading the current truth in one place, in order, means two
/// tabs opening (or closing) together give one event, not two or none.
#[derive(Default)]
pub(crate) struct Announcer {
    /// Users whose streams opened or closed since the task last looked,
    /// with a principal to choose the audiences from.
    changed: Mutex<HashMap<UserId, Principal>>,
    wake: Arc<Notify>,
    started: OnceLock<()>,
}

/// After a stream registered or unregistered.
pub(crate) fn changed(shared: &Arc<Shared>, principal: &Principal) {
    if shared.config.presence_events.is_none() {
        return;
    }
    let announcer = &shared.announcer;
    announcer
        .changed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(principal.user().clone(), principal.clone());
    announcer.wake.notify_one();
    if announcer.started.get().is_none()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
        && announcer.started.set(()).is_ok()
    {
        runtime.spawn(run(Arc::downgrade(shared), announcer.wake.clone()));
    }
}

/// The announcing task; ends with the service.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    // Users announced online, and not since announced offline.
    let mut online: HashSet<UserId> = HashSet::new();
    loop {
        wake.notified().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let changed = std::mem::take(
            &mut *shared
                .announcer
                .changed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (user, principal) in changed {
            announce(&shared, &mut online, user, &principal).await;
        }
    }
}

async fn announce(
    shared: &Shared,
    online: &mut HashSet<UserId>,
    user: UserId,
    principal: &Principal,
) {
    let Some(audiences) = shared.config.presence_events.as_ref() else {
        return;
    };
    let hub = shared.notifier.hub();
    let streams = match hub.presence(&Audience::User(user.clone())).await {
        Ok(presence) => presence.streams,
        Err(error) => {
            tracing::warn!(%error, "presence could not be read; no join or leave event sent");
            return;
        }
    };
    let now_online = streams > 0;
    if now_online == online.contains(&user) {
        return;
    }
    if now_online {
        online.insert(user.clone());
    } else {
        online.remove(&user);
    }
    let change = Change {
        user: user.as_str(),
        online: now_online,
    };
    let event = match Event::builder()
        .event(PRESENCE_EVENT)
        .json_data(&change)
        .build()
    {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "a presence event could not be built");
            return;
        }
    };
    for audience in audiences(principal) {
        if let Err(error) = hub.publish(&audience, &event).await {
            tracing::warn!(%error, "a presence event could not be published");
        }
    }
}
