//! The integration suite: every test starts the real server on port 0 with
//! its own database and talks to it over HTTP (or runs the real binary).

mod helpers;

mod cli;
mod lifecycle;
mod sessions;
mod smoke;
mod tokens;
