//! The store against a real PostgreSQL: every test owns a database cloned from
//! the migrated template (`juy_store::testing::TestDatabase`).

mod accounts;
mod calendars;
mod encryption;
mod events;
mod keys;
mod migrations;
mod pool;
mod settings;
mod support;
