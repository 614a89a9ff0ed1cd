//! The schema, shipped with the crate, and the runner that applies it.
//!
//! Each dialect has numbered migrations; applied versions are recorded in
//! `sse_schema_version`. On PostgreSQL the runner holds an advisory lock
//! for its transaction, so nodes starting together apply each migration
//! once. Teams that run migrations with their own tooling can copy
//! [`SQLITE`] / [`POSTGRES`] and connect with
//! [`SqlStoreBuilder::run_migrations(false)`](crate::SqlStoreBuilder::run_migrations).

use sqlx::AnyPool;

use crate::{Backend, SqlStoreError};

/// One schema change: its version and SQL (statements separated by `;`).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order, each once.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// The SQLite schema.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "notifications, recipients and the change log",
        sql: include_str!("../migrations/sqlite/0001_notifications.sql"),
    },
    Migration {
        version: 2,
        description: "cookie sessions",
        sql: include_str!("../migrations/sqlite/0002_sessions.sql"),
    },
];

/// The PostgreSQL schema.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "notifications, recipients and the change log",
        sql: include_str!("../migrations/postgres/0001_notifications.sql"),
    },
    Migration {
        version: 2,
        description: "cookie sessions",
        sql: include_str!("../migrations/postgres/0002_sessions.sql"),
    },
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS sse_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// An arbitrary constant naming this crate's advisory lock.
const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(5365200001)";

/// Applies the migrations `pool` has not seen yet.
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
    for migration in migrations {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM sse_schema_version WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed(migration.version))?;
        if applied.is_some() {
            continue;
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
        sqlx::query("INSERT INTO sse_schema_version (version, applied_at) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(sse_core::Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await
            .map_err(failed(migration.version))?;
    }
    tx.commit().await.map_err(failed(0))
}
