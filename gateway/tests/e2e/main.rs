//! End-to-end tests: the real `tarn` binary, real sockets, real storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod otlp_data;
mod traces;
