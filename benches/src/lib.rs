//! Shared pieces of the benchmarks: where the databases are, quantiles,
//! process memory, and logging in to the example app.
#![forbid(unsafe_code)]

/// `DATABASE_URL`, or the local PostgreSQL.
pub fn postgres_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty PostgreSQL database for benchmark `name` on the server of
/// [`postgres_url`] (dropped and created again on each call), so that a
/// run never depends on what an earlier one left in the shared database.
///
/// # Panics
///
/// When PostgreSQL is not reachable: benchmarks need it, they do not skip.
#[allow(clippy::panic)]
pub async fn fresh_postgres_url(name: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = postgres_url();
    let database = format!("sse_bench_{name}");
    let result = async {
        let pool = sqlx::AnyPool::connect(&admin).await?;
        for statement in [
            format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            format!("CREATE DATABASE {database}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = result {
        panic!("PostgreSQL at {admin} is required (start it, or set DATABASE_URL): {e}");
    }
    match admin.rfind('/') {
        Some(slash) => format!("{}/{database}", &admin[..slash]),
        None => panic!("DATABASE_URL has no database name: {admin}"),
    }
}

/// A fresh SQLite file in the system temp directory.
pub fn sqlite_url(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("sse-bench-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

/// Deletes the database file (and its WAL) behind a [`sqlite_url`].
pub fn remove_sqlite(url: &str) {
    let path = url.trim_start_matches("sqlite://");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 if unreadable.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `REDIS_URL`, or the local Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `NATS_URL`, or the local NATS server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// CPU seconds (user + system) process `pid` has used, from
/// `/proc/PID/stat` (clock ticks of 10 ms); 0 if unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Logs `user` in to the example app at `addr` (`POST /api/login`); the
/// session cookie (`name=value`) it sets.
pub async fn login(addr: std::net::SocketAddr, user: &str) -> Result<String, String> {
    let response = sse_conformance::client::Request::new("POST", "/api/login")
        .header("content-type", "application/json")
        .body(serde_json::json!({ "user": user }).to_string())
        .send(&addr.to_string())
        .await
        .map_err(|e| e.to_string())?;
    response
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("login answered {}", response.status()))
}
