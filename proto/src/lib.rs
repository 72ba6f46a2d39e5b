//! Tarn's wire formats, with no I/O.
//!
//! - [`otlp`] (feature `otlp`): the OpenTelemetry protocol messages and the `google.rpc`
//!   status types that OTLP errors carry.
//!
//! The crate sits at the bottom of the workspace: it depends on no other Tarn crate, and
//! with default features it pulls no protobuf or gRPC stack, so the instrumentation crate
//! can use it cheaply.

#[cfg(feature = "otlp")]
pub mod otlp;
