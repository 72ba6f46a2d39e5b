//! Quick loop: ns per event for tarn metrics/spans/logs and the floor, chunk size from
//! the first argument (bytes).
use std::hint::black_box;
use std::time::Instant;
fn main() {
    let chunk: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 << 10);
    let _g = tarn_tracing::TelemetryBuilder::new()
        .discard()
        .chunk_bytes(chunk)
        .start()
        .expect("start");
    let n = 50_000_000u64;
    for round in 0..2 {
        let t = Instant::now();
        for _ in 0..n {
            tracing_bench::floor::event();
        }
        let floor = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        for i in 0..n {
            tarn_tracing::imetric!("m", "count", black_box(i));
        }
        let metric = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            tarn_tracing::info!("static");
        }
        let log = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        for _ in 0..n / 2 {
            tarn_tracing::span_scope!("s");
        }
        let span = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        for i in 0..n / 4 {
            tarn_tracing::info!("value {}", black_box(i));
        }
        let fmt = t.elapsed().as_secs_f64() * 1e9 / (n / 4) as f64;
        struct W {
            buf: [u8; 256],
            pos: usize,
        }
        impl std::fmt::Write for W {
            #[inline]
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let end = self.pos + s.len();
                if end > self.buf.len() {
                    return Err(std::fmt::Error);
                }
                self.buf[self.pos..end].copy_from_slice(s.as_bytes());
                self.pos = end;
                Ok(())
            }
        }
        let mut w = W {
            buf: [0; 256],
            pos: 0,
        };
        let t = Instant::now();
        for i in 0..n / 4 {
            w.pos = 0;
            let _ = std::fmt::write(&mut w, format_args!("value {}", black_box(i)));
            black_box(&w);
        }
        let rawfmt = t.elapsed().as_secs_f64() * 1e9 / (n / 4) as f64;
        println!("raw fmt {rawfmt:.2}");
        println!(
            "round {round} chunk {chunk}: floor {floor:.2} metric {metric:.2} log {log:.2} span/event {span:.2} fmt {fmt:.2}"
        );
    }
    println!("{:?}", tarn_tracing::stats());
}
