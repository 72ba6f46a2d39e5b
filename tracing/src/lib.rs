//! `tarn-tracing`: Tarn's low-overhead instrumentation crate (log, metric and span
//! macros writing the native transit format into per-thread buffers, and an HTTP sink).
//!
//! This crate is the placeholder the workspace layout reserves; the instrumentation API
//! lands with its own issue. It depends only on `tarn-proto` (without the OTLP feature),
//! and must never pull Arrow, DataFusion, Delta or tonic.
