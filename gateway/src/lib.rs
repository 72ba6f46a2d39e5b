//! The Tarn gateway: protocol front ends, normalization into the canonical tables,
//! FlightSQL, and the `tarn` command line.

pub mod cli;
pub mod clock;
pub mod flightsql;
pub mod ingest;
pub mod load;
pub mod otlp;
pub mod query;
pub mod serve;
