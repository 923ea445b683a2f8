//! The store against a real PostgreSQL: every test owns a database cloned from
//! the migrated template (`juy_store::testing::TestDatabase`).

// Test code: fixtures outside `#[test]` functions may panic too.
#![allow(clippy::unwrap_used)]

mod accounts;
mod audit;
mod availability;
mod busy_blocks;
mod calendars;
mod encryption;
mod events;
mod keys;
mod migrations;
mod oauth_states;
mod pool;
mod push_channels;
mod reminders;
mod settings;
mod support;
mod sync_state;
