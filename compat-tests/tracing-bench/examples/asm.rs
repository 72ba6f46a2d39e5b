//! For reading the machine code of the hot paths (`objdump -d --no-show-raw-insn`).
#[inline(never)]
pub fn tarn_metric(v: u64) {
    tarn_tracing::imetric!("metric", "count", v);
}
#[inline(never)]
pub fn tarn_span() {
    tarn_tracing::span_scope!("span");
}
#[inline(never)]
pub fn tarn_log() {
    tarn_tracing::info!("static");
}
fn main() {
    tarn_metric(std::hint::black_box(1));
    tarn_span();
    tarn_log();
}
