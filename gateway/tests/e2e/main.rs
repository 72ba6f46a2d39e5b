//! End-to-end tests: the real `tarn` binary, real sockets, real storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod compat;
mod faults;
mod harness;
mod load;
mod lossless;
mod maintenance;
mod native;
mod operations;
mod otlp_data;
mod protocols;
mod readers;
mod slt;
mod tls;
mod tools;
mod traces;
