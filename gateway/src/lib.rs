//! The Tarn gateway: protocol front ends, normalization into the canonical tables,
//! FlightSQL, and the `tarn` command line.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod flightsql;
pub mod ingest;
pub mod load;
pub mod metrics;
pub mod native;
pub mod otlp;
pub mod query;
pub mod serve;
pub mod tls;
