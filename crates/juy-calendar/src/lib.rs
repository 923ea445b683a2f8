//! The Calendar Service binary's library: configuration, telemetry, TLS,
//! the listeners' lifecycle and the dev-only seed. `main.rs` is the CLI on
//! top; integration tests start servers through [`server::start`].
#![forbid(unsafe_code)]

pub mod config;
pub mod dev;
pub mod server;
pub mod telemetry;
pub mod tls;
