//! Tarn's wire formats, with no I/O.
//!
//! - [`native`]: the Micromegas native protocol (CBOR envelopes, LZ4 frames, transit records),
//!   decoding and encoding. Always available: the instrumentation crate uses it.
//! - [`otlp`] (feature `otlp`): the OpenTelemetry protocol messages and the `google.rpc`
//!   status types that OTLP errors carry.
//!
//! The crate sits at the bottom of the workspace: it depends on no other Tarn crate, and
//! with default features it pulls no protobuf or gRPC stack, so the instrumentation crate
//! can use it cheaply.

pub mod native;
#[cfg(feature = "otlp")]
pub mod otlp;
