//! The schema's history: migrations are checked against what was applied,
//! and databases of earlier versions migrate forward.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sqlx::AnyPool;
use sse_sqlx::{SqlStore, SqlStoreError};

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    AnyPool::connect(&url).await.unwrap()
}

#[tokio::test]
async fn an_edited_migration_is_refused_at_connect() {
    for url in [
        support::sqlite_url("edited"),
        support::fresh_postgres_url("edited").await,
    ] {
        SqlStore::connect(&url).await.unwrap().close().await;
        let raw = pool(&url).await;
        sqlx::query("UPDATE sse_schema_version SET checksum = 'edited' WHERE version = 1")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
        match SqlStore::connect(&url).await {
            Err(SqlStoreError::MigrationChanged { version: 1, .. }) => {}
            other => panic!("{url}: expected MigrationChanged, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn databases_migrated_before_checksums_adopt_them() {
    for url in [
        support::sqlite_url("pre-checksum"),
        support::fresh_postgres_url("prechecksum").await,
    ] {
        SqlStore::connect(&url).await.unwrap().close().await;
        // The bookkeeping table as it was before checksums were recorded.
        let raw = pool(&url).await;
        sqlx::raw_sql(
            "CREATE TABLE old_versions AS SELECT version, applied_at FROM sse_schema_version; \
             DROP TABLE sse_schema_version; \
             ALTER TABLE old_versions RENAME TO sse_schema_version;",
        )
        .execute(&raw)
        .await
        .unwrap();
        raw.close().await;
        SqlStore::connect(&url).await.unwrap().close().await;
        let raw = pool(&url).await;
        let missing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sse_schema_version WHERE checksum IS NULL")
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!(missing, 0, "{url}");
    }
}

/// A database as the previous release left it: migrations 1 to 3, its
/// version table without checksums, and data written the way that release
/// wrote it (notifications, per-recipient counters, a per-recipient change
/// log). Connecting upgrades it; nothing is lost, and what was in the
/// change log replays from the new event log.
#[tokio::test]
async fn a_database_of_the_previous_release_upgrades_and_replays() {
    use sse_core::log::Replay;
    use sse_core::{
        ChangeKind, EventLog, Notification, NotificationId, NotificationStore, Principal, Timestamp,
    };

    for (url, migrations) in [
        (support::sqlite_url("upgrade"), sse_sqlx::migrate::SQLITE),
        (
            support::fresh_postgres_url("upgrade").await,
            sse_sqlx::migrate::POSTGRES,
        ),
    ] {
        let raw = pool(&url).await;
        sqlx::raw_sql(
            "CREATE TABLE sse_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&raw)
        .await
        .unwrap();
        for migration in &migrations[..3] {
            sqlx::raw_sql(migration.sql).execute(&raw).await.unwrap();
            sqlx::query("INSERT INTO sse_schema_version (version, applied_at) VALUES ($1, 0)")
                .bind(migration.version)
                .execute(&raw)
                .await
                .unwrap();
        }
        // bob: two notifications, the first read; carol: one.
        let mut at = 1_700_000_000_000i64;
        let mut changes: Vec<(String, i64, i64, ChangeKind)> = Vec::new();
        for (n, user) in [(1u64, "bob"), (2, "carol"), (3, "bob")] {
            let notification = Notification::from_new(
                NotificationId(n),
                sse_core::NewNotification::new(user, format!("old {n}")),
                Timestamp::from_millis(at),
            );
            // As the previous release did: the database assigns the id (1, 2, 3 here).
            sqlx::query("INSERT INTO sse_notifications (user_id, title, message, kind, action_url, read, created_at) VALUES ($1, $2, '', 'info', NULL, FALSE, $3)")
                .bind(user)
                .bind(format!("old {n}"))
                .bind(at)
                .execute(&raw)
                .await
                .unwrap();
            let unread = changes.iter().filter(|c| c.0 == user).count() as i64 + 1;
            changes.push((
                user.to_owned(),
                at,
                unread,
                ChangeKind::Created { notification },
            ));
            at += 1_000;
        }
        sqlx::query("UPDATE sse_notifications SET read = TRUE WHERE id = 1")
            .execute(&raw)
            .await
            .unwrap();
        changes.push((
            "bob".into(),
            at,
            1,
            ChangeKind::Read {
                ids: vec![NotificationId(1)],
            },
        ));
        let mut per_user: std::collections::HashMap<String, i64> = Default::default();
        for (user, at, unread, kind) in &changes {
            let id = per_user.entry(user.clone()).or_default();
            *id += 1;
            sqlx::query("INSERT INTO sse_changes (user_id, id, at, unread_count, kind) VALUES ($1, $2, $3, $4, $5)")
                .bind(user.as_str())
                .bind(*id)
                .bind(*at)
                .bind(*unread)
                .bind(serde_json::to_string(kind).unwrap())
                .execute(&raw)
                .await
                .unwrap();
        }
        for (user, last, unread) in [("bob", 3i64, 1i64), ("carol", 1, 1)] {
            sqlx::query("INSERT INTO sse_recipients (user_id, last_event_id, unread_count, pruned_through) VALUES ($1, $2, $3, 0)")
                .bind(user)
                .bind(last)
                .bind(unread)
                .execute(&raw)
                .await
                .unwrap();
        }
        raw.close().await;

        let store = SqlStore::connect(&url).await.unwrap();
        // The inbox is intact.
        let bob = store
            .list(&"bob".into(), sse_core::PageRequest::first(10))
            .await
            .unwrap();
        let titles: Vec<(&str, bool)> = bob
            .items
            .iter()
            .map(|n| (n.title.as_str(), n.read))
            .collect();
        assert_eq!(titles, [("old 3", false), ("old 1", true)], "{url}");
        assert_eq!(store.unread_count(&"bob".into()).await.unwrap(), 1);
        assert_eq!(store.unread_count(&"carol".into()).await.unwrap(), 1);
        // The change log replays from the event log, each user's own, in order.
        let head = store.head().await.unwrap();
        assert_eq!(head.position(), 4, "{url}: every old change moved");
        let start = head.epoch().at(0);
        let Replay::Events { events, .. } = store
            .since(&Principal::new("bob"), start, 100)
            .await
            .unwrap()
        else {
            panic!("{url}: history gone after the upgrade");
        };
        let payloads: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                let parsed = sse_conformance::parser::events(e.frame());
                assert_eq!(parsed[0].event_type, "notification");
                serde_json::from_str(&parsed[0].data).unwrap()
            })
            .collect();
        assert_eq!(payloads.len(), 3, "{url}");
        assert_eq!(payloads[0]["notification"]["title"], "old 1");
        assert_eq!(payloads[1]["notification"]["title"], "old 3");
        assert_eq!(
            (
                payloads[2]["type"].as_str(),
                payloads[2]["unreadCount"].as_u64()
            ),
            (Some("read"), Some(1))
        );
        // And life goes on after the migrated history.
        let next = store
            .create(sse_core::NewNotification::new("carol", "new"))
            .await
            .unwrap();
        assert_eq!(next.cursor, head.next());
        assert_eq!(store.unread_count(&"carol".into()).await.unwrap(), 2);
        store.close().await;
        // Connecting again applies nothing twice.
        let again = SqlStore::connect(&url).await.unwrap();
        assert_eq!(again.head().await.unwrap(), next.cursor);
    }
}
