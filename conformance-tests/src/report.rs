//! Named checks, their outcomes and the table adopters read.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// Why it failed, phrased as what was expected and what happened.
    Fail(String),
    /// Why it could not run (e.g. no way to publish was given).
    Skip(String),
}

/// The outcome of one named check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check's name, e.g. `hub::isolation_under_concurrency`.
    pub name: String,
    /// Passed, failed (and why) or skipped (and why).
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a check did not pass. Check functions return `Result<(), E>` for
/// any `E: Into<Failure>`; a plain `String` error is a failure.
#[derive(Debug)]
pub(crate) enum Failure {
    Fail(String),
    Skip(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Self::Fail(why)
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Self {
        Self::Fail(why.to_owned())
    }
}

/// The results of a suite run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per check, in the order run.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Whether no check failed (skipped checks do not fail a report).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// The outcome of the check named `name`, if it ran.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// Panics with the table if any check failed: for `#[tokio::test]`s.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("conformance checks failed:\n{self}");
        }
    }

    /// Runs one named check (limited to `timeout`) and records its outcome:
    /// `Ok(())` passes, `Err(why)` fails with `why`.
    pub async fn check<F, Fut>(&mut self, name: &str, timeout: Duration, check: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        self.run(name, timeout, check).await;
    }

    /// Appends another report's checks.
    pub fn extend(&mut self, other: Report) {
        self.checks.extend(other.checks);
    }

    pub(crate) async fn run<F, Fut, E>(&mut self, name: &str, timeout: Duration, check: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<Failure>,
    {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, check()).await {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(why)) => match why.into() {
                Failure::Fail(why) => Outcome::Fail(why),
                Failure::Skip(why) => Outcome::Skip(why),
            },
            Err(_) => Outcome::Fail(format!("did not finish within {timeout:?}")),
        };
        self.checks.push(CheckResult {
            name: name.to_owned(),
            outcome,
            elapsed: started.elapsed(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "{:<width$}  result  time", "check")?;
        for check in &self.checks {
            let (verdict, why) = match &check.outcome {
                Outcome::Pass => ("PASS", None),
                Outcome::Fail(why) => ("FAIL", Some(why)),
                Outcome::Skip(why) => ("SKIP", Some(why)),
            };
            writeln!(
                f,
                "{:<width$}  {verdict:<6}  {:>6.0?}",
                check.name, check.elapsed
            )?;
            for line in why.into_iter().flat_map(|w| w.lines()) {
                writeln!(f, "{:<width$}    {line}", "")?;
            }
        }
        let failed = self.failures().count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skip(_)))
            .count();
        write!(
            f,
            "{} checks, {} passed, {failed} failed, {skipped} skipped",
            self.checks.len(),
            self.checks.len() - failed - skipped
        )
    }
}

/// Fails a check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}
pub(crate) use ensure;

/// A prefix unique to this run, so suites can share a real backend.
pub(crate) fn run_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(Instant::now());
    format!("c{:08x}", random as u32)
}
