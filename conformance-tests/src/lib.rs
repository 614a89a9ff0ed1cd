//! Tells adopters, with precise failure messages, whether what they built
//! keeps the guarantees of the SSE notification layer.
//!
//! - [`parser`]: a streaming `text/event-stream` parser that follows the
//!   WHATWG algorithm exactly; use it in Rust clients and tests.
//! - [`client`]: a byte-exact HTTP/1.1 client for event streams, and
//!   [`server`]: serves any tower service on loopback for such tests.
//! - [`hub::run`] (and [`hub::run_nodes`] for hubs spanning nodes),
//!   [`log::run`], [`store::run`], [`authenticator::run`]: suites generic
//!   over your [`Hub`](sse_core::Hub), [`EventLog`](sse_core::EventLog),
//!   [`NotificationStore`](sse_core::NotificationStore) and
//!   [`SessionAuthenticator`](sse_core::SessionAuthenticator), called from
//!   your own `#[tokio::test]`.
//! - [`check`]: the black-box checker behind the `sse-conformance check`
//!   binary, for a deployed endpoint.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use sse_core::{InMemoryHub, InMemoryLog, InMemoryStore};
//!
//! sse_conformance::hub::run(|| async { InMemoryHub::new() }).await;
//! sse_conformance::log::run(|retention| async move { InMemoryLog::with_retention(retention) }).await;
//! sse_conformance::store::run(|| async {
//!     let store = InMemoryStore::new();
//!     (store.clone(), store)
//! })
//! .await;
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authenticator;
pub mod check;
pub mod client;
pub mod hub;
pub mod log;
pub mod parser;
pub mod proxy;
pub mod report;
pub mod server;
pub mod sim;
pub mod store;

pub use report::{CheckResult, Outcome, Report};
