//! Guide: mapping your existing schema.
//!
//! You already have a `notifications` table (or `invoices`, `jobs`, `orders`)
//! and code that writes it. You want every tab of the right users to see
//! each change live, and a tab that was offline to catch up when it comes
//! back. You do **not** need [`NotificationStore`](crate::NotificationStore)
//! for that: it is one ready-made schema, not a requirement. What the stream
//! needs is the [`EventLog`](crate::EventLog); what your code needs is one
//! call after each write:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use sse_core::{Audience, Event, InMemoryHub, InMemoryLog, Notifier};
//!
//! /// A row of your own table, in your own shape.
//! #[derive(serde::Serialize, Clone)]
//! struct InvoiceRow { id: i64, customer: String, org: String, amount_cents: i64, status: String }
//!
//! /// Your existing write path: your database, your schema.
//! struct Invoices { table: Mutex<Vec<InvoiceRow>>, notifier: Notifier }
//!
//! impl Invoices {
//!     async fn mark_paid(&self, id: i64) -> Result<(), Box<dyn std::error::Error>> {
//!         let row = {
//!             let mut table = self.table.lock().unwrap();
//!             let row = table.iter_mut().find(|r| r.id == id).ok_or("no such invoice")?;
//!             row.status = "paid".into();
//!             row.clone()
//!         };
//!         // One event, in the shape your front end wants, to whoever
//!         // should see it: the customer's tabs and the finance group.
//!         let event = Event::builder().event("invoice.paid").json_data(&row).build()?;
//!         self.notifier.publish(&Audience::user(row.customer.clone()), &event).await?;
//!         self.notifier.publish(&Audience::group(format!("{}-finance", row.org)), &event).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let notifier = Notifier::new(Arc::new(InMemoryLog::new()), Arc::new(InMemoryHub::new()));
//! let invoices = Invoices {
//!     table: Mutex::new(vec![InvoiceRow { id: 7, customer: "bob".into(), org: "acme".into(), amount_cents: 1200, status: "open".into() }]),
//!     notifier,
//! };
//! invoices.mark_paid(7).await?;
//! # Ok(()) }
//! ```
//!
//! `publish` appends the event to the log (it gets its position, the SSE
//! `id:`) and then delivers it to every live connection of the audience; a
//! connection that was away replays it after its `Last-Event-ID`. Mount the
//! stream with the same log and hub (`SseService::builder(auth).log(…).hub(…)`,
//! or `.notifier(&notifier)`) and authenticate the way your app already
//! does: the principal's user, groups and topics decide what it replays.
//!
//! # Keeping the write and the event together
//!
//! Your row and the log entry live in two places, so a crash between them
//! could commit the row without its event. Three ways to close that gap,
//! from simplest to strongest:
//!
//! - **Publish after commit, retry on failure.** `publish` fails with
//!   [`NotifyError::Store`](crate::NotifyError::Store) when the log could
//!   not take the event (nothing was stored: retry), and with
//!   [`NotifyError::Publish`](crate::NotifyError::Publish) when it was
//!   stored but not delivered live (nothing to do: clients get it on
//!   replay).
//! - **Same database, same transaction.** With `sse-sqlx`, append to the
//!   log inside your own transaction (`SqlStore::append_in`), commit, then
//!   hand the stored events to [`Notifier::deliver`](crate::Notifier::deliver)
//!   for live delivery. The row and its event commit together or not at
//!   all.
//! - **An outbox** of your own, drained into `publish`, if the log is in
//!   another database than your rows.
//!
//! # What to send
//!
//! Any event name and any payload: [`Event::builder`](crate::Event::builder)
//! with `.event("invoice.paid")` and `.json_data(&row)` (JSON arrives as
//! JSON, never as an escaped string) or `.data(text)`. Leave the id unset:
//! the log assigns it. Events to a user, a group, a topic or everyone are
//! durable; events to one session or one connection are not (use
//! [`Notifier::broadcast`](crate::Notifier::broadcast) for those, and for
//! anything that need not survive a reconnect, such as typing indicators).
