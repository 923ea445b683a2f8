//! The Calendar Service's storage: the only crate that speaks SQL. It owns the
//! diesel schema and migrations, the connection pool, the per-user data keys
//! and every query, and it seals every `*_enc` column with the owner's data
//! key before a value reaches PostgreSQL.
//!
//! It must not know HTTP, gRPC or providers, must never put plaintext of event
//! texts, calendar or account names, or credentials into SQL, logs or error
//! messages, and must never run one query per event: writes are multi-row
//! statements, reads are keyset-paged. Functions take `&mut AsyncPgConnection`
//! so callers choose the transaction; there are no repository traits.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod audit;
pub mod availability;
pub mod busy_blocks;
pub mod calendars;
pub mod erasure;
mod error;
pub mod events;
pub mod keys;
pub mod meetings;
mod migrations;
pub mod oauth_states;
mod pool;
pub mod push_channels;
pub mod reminders;
mod schema;
pub mod settings;
pub mod sync_jobs;
pub mod sync_state;
#[cfg(feature = "testing")]
pub mod testing;

pub use diesel_async::AsyncPgConnection;
pub use error::StoreError;
pub use keys::RotationReport;
pub use migrations::{MIGRATIONS, run_migrations};
pub use pool::{Conn, PoolConfig, Store, in_snapshot};
