//! Latchkey: a self-hosted token authentication server.
//!
//! - [`cli`]: the `latchkey` command line and the admin commands.
//! - [`config`]: settings, layered from defaults, a TOML file, env and flags.
//! - [`telemetry`]: logging set-up.
//! - [`app`]: assembly of store, keys, hasher and router.
//! - [`serve`]: the HTTP listener with its connection limits and graceful shutdown.
//! - [`http`]: the HTTP API, one module per resource, with its state and its
//!   one error type.
//! - [`domain`]: accounts, sessions, tokens, keys, throttles and revocation.
//! - [`store`]: the storage trait and its SQL backends.
//!
//! Dependencies run one way: `app` → `http` → `domain` → `store`.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod serve;
pub mod store;
pub mod telemetry;
