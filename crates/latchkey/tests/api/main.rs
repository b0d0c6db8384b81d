//! The integration suite: every test starts the real server on port 0 with
//! its own database and talks to it over HTTP (or runs the real binary);
//! `contract` holds the storage contract, run on both backends directly.
//! The suite runs on SQLite; `LATCHKEY_TEST_BACKEND=postgres` runs it all
//! again on PostgreSQL (CI does both).

mod backend;
mod helpers;
mod tools;

mod accounts;
mod admin;
mod browser;
mod cli;
mod compat;
mod contract;
mod cookies;
mod django;
mod docs;
mod edges;
mod feed;
mod fuzz;
mod hardening;
mod interop;
mod keys;
mod lifecycle;
mod lockout;
mod mail;
mod mfa;
mod passkeys;
mod python_package;
mod races;
mod resource_server;
mod restore;
mod scaleout;
mod sessions;
mod smoke;
mod tokens;
mod webhooks;
