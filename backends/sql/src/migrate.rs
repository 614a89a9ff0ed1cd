//! The schema, shipped with the crate, and the runner that applies it.
//!
//! Each dialect has numbered migrations; applied versions are recorded in
//! `sse_schema_version` with the SHA-256 of the SQL that was applied. On
//! connect the runner checks every recorded checksum against the SQL this
//! build ships and refuses to start ([`SqlStoreError::MigrationChanged`])
//! if one differs: an edited migration would otherwise leave databases
//! migrated before and after the edit with different schemas, silently.
//! On PostgreSQL the runner holds an advisory lock for its transaction, so
//! nodes starting together apply each migration once. Teams that run
//! migrations with their own tooling can copy [`SQLITE`] / [`POSTGRES`] and
//! connect with
//! [`SqlStoreBuilder::run_migrations(false)`](crate::SqlStoreBuilder::run_migrations).
//!
//! (The bookkeeping is this crate's own table rather than sqlx's
//! `_sqlx_migrations`, which the application's own sqlx migrations use: a
//! shared table would make each side see the other's versions as unknown.)

use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use crate::{Backend, SqlStoreError};

/// One schema change: its version and SQL (statements separated by `;`),
/// and for some a data step the runner performs in code after the SQL, in
/// the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order, each once.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// The SQL.
    pub sql: &'static str,
    /// Work the SQL cannot express, run right after it.
    pub data: Option<DataStep>,
}

/// A migration's step in code. Teams that apply the SQL with their own
/// tooling must run the same step; [`crate::SqlStore`] does it for them on
/// connect when it finds it pending (see [`DataStep::ChangesToLog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataStep {
    /// Moves the per-recipient change log of migration 1 (`sse_changes`)
    /// into the event log, oldest first, re-encoding each change as the
    /// event streams send; creates the log's head with a fresh epoch; drops
    /// `sse_changes`. Notifications and unread counts are untouched.
    ChangesToLog,
}

/// The SQLite schema.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "notifications, recipients and the change log",
        sql: include_str!("../migrations/sqlite/0001_notifications.sql"),
        data: None,
    },
    Migration {
        version: 2,
        description: "cookie sessions",
        sql: include_str!("../migrations/sqlite/0002_sessions.sql"),
        data: None,
    },
    Migration {
        version: 3,
        description: "sessions keyed by a hash of their credential",
        sql: include_str!("../migrations/sqlite/0003_hashed_sessions.sql"),
        data: None,
    },
    Migration {
        version: 4,
        description: "one event log for every durable audience; notification data",
        sql: include_str!("../migrations/sqlite/0004_event_log.sql"),
        data: Some(DataStep::ChangesToLog),
    },
];

/// The PostgreSQL schema.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "notifications, recipients and the change log",
        sql: include_str!("../migrations/postgres/0001_notifications.sql"),
        data: None,
    },
    Migration {
        version: 2,
        description: "cookie sessions",
        sql: include_str!("../migrations/postgres/0002_sessions.sql"),
        data: None,
    },
    Migration {
        version: 3,
        description: "sessions keyed by a hash of their credential",
        sql: include_str!("../migrations/postgres/0003_hashed_sessions.sql"),
        data: None,
    },
    Migration {
        version: 4,
        description: "one event log for every durable audience; notification data",
        sql: include_str!("../migrations/postgres/0004_event_log.sql"),
        data: Some(DataStep::ChangesToLog),
    },
];

impl Migration {
    /// The SHA-256 of the SQL, as 64 hex digits: what the runner records
    /// and checks.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS sse_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// An arbitrary constant naming this crate's advisory lock.
const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(5365200001)";

/// Does the bookkeeping table have the checksum column (databases migrated
/// before checksums were recorded do not)?
fn checksum_column_query(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM pragma_table_info('sse_schema_version') WHERE name = 'checksum'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'sse_schema_version' AND column_name = 'checksum'"
        }
    }
}

/// Applies the migrations `pool` has not seen yet, after checking the
/// ones it has.
pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<(), SqlStoreError> {
    let (migrations, begin) = match backend {
        Backend::Sqlite => (SQLITE, "BEGIN IMMEDIATE"),
        Backend::Postgres => (POSTGRES, "BEGIN"),
    };
    let failed =
        |version: i64| move |source: sqlx::Error| SqlStoreError::Migrate { version, source };
    let mut tx = pool.begin_with(begin).await.map_err(failed(0))?;
    if backend == Backend::Postgres {
        sqlx::query(PG_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(failed(0))?;
    }
    sqlx::query(VERSION_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(failed(0))?;
    let has_checksums: i64 = sqlx::query_scalar(checksum_column_query(backend))
        .fetch_one(&mut *tx)
        .await
        .map_err(failed(0))?;
    if has_checksums == 0 {
        sqlx::query("ALTER TABLE sse_schema_version ADD COLUMN checksum TEXT")
            .execute(&mut *tx)
            .await
            .map_err(failed(0))?;
    }
    for migration in migrations {
        let checksum = migration.checksum();
        let applied: Option<Option<String>> =
            sqlx::query_scalar("SELECT checksum FROM sse_schema_version WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed(migration.version))?;
        match applied {
            Some(Some(recorded)) if recorded == checksum => continue,
            Some(Some(recorded)) => {
                return Err(SqlStoreError::MigrationChanged {
                    version: migration.version,
                    recorded,
                    shipped: checksum,
                });
            }
            Some(None) => {
                // Applied before checksums were recorded: adopt this one.
                sqlx::query("UPDATE sse_schema_version SET checksum = $2 WHERE version = $1")
                    .bind(migration.version)
                    .bind(&checksum)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed(migration.version))?;
                continue;
            }
            None => {}
        }
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applying migration"
        );
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(failed(migration.version))?;
        if let Some(step) = migration.data {
            run_data_step(&mut tx, step)
                .await
                .map_err(failed(migration.version))?;
        }
        sqlx::query(
            "INSERT INTO sse_schema_version (version, applied_at, checksum) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(sse_core::Timestamp::now().as_millis())
        .bind(&checksum)
        .execute(&mut *tx)
        .await
        .map_err(failed(migration.version))?;
    }
    tx.commit().await.map_err(failed(0))
}

/// Runs a migration's step in code, inside its transaction.
async fn run_data_step(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    step: DataStep,
) -> Result<(), sqlx::Error> {
    match step {
        DataStep::ChangesToLog => changes_to_log(tx).await,
    }
}

/// See [`DataStep::ChangesToLog`].
async fn changes_to_log(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    use sse_core::log::Epoch;
    use sse_core::{Audience, Change, ChangeKind};

    const BATCH: i64 = 1_000;
    let epoch = Epoch::random();
    let mut position: i64 = 0;
    // Keyset pagination over (at, user_id, id): the order changes were
    // made in, one recipient's changes in their own order.
    let mut after: (i64, String, i64) = (i64::MIN, String::new(), i64::MIN);
    loop {
        let rows = sqlx::query(
            "SELECT at, user_id, id, unread_count, kind FROM sse_changes \
             WHERE (at, user_id, id) > ($1, $2, $3) ORDER BY at, user_id, id LIMIT $4",
        )
        .bind(after.0)
        .bind(after.1.as_str())
        .bind(after.2)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let at: i64 = row.try_get(0)?;
            let user: String = row.try_get(1)?;
            let id: i64 = row.try_get(2)?;
            let unread: i64 = row.try_get(3)?;
            let kind: String = row.try_get(4)?;
            after = (at, user.clone(), id);
            let kind: ChangeKind =
                serde_json::from_str(&kind).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            position += 1;
            let event = Change::encode(&kind, u64::try_from(unread).unwrap_or(0))
                .and_then(|event| event.with_cursor(epoch.at(u64::try_from(position).unwrap_or(0))))
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let frame = String::from_utf8(event.frame().to_vec())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            sqlx::query("INSERT INTO sse_log (pos, audience, at, frame) VALUES ($1, $2, $3, $4)")
                .bind(position)
                .bind(Audience::user(user).key().unwrap_or_default())
                .bind(at)
                .bind(frame)
                .execute(&mut **tx)
                .await?;
        }
    }
    sqlx::query("INSERT INTO sse_log_head (id, epoch, pos, pruned_through) VALUES (1, $1, $2, 0)")
        .bind(epoch.to_string())
        .bind(position)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DROP TABLE sse_changes")
        .execute(&mut **tx)
        .await?;
    tracing::info!(moved = position, "the change log moved into the event log");
    Ok(())
}
