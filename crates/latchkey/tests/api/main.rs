//! The integration suite: every test starts the real server on port 0 with
//! its own database and talks to it over HTTP (or runs the real binary).

mod backend;
mod helpers;

mod accounts;
mod browser;
mod cli;
mod cookies;
mod feed;
mod hardening;
mod interop;
mod keys;
mod lifecycle;
mod lockout;
mod postgres;
mod races;
mod resource_server;
mod restore;
mod scaleout;
mod sessions;
mod smoke;
mod tokens;
