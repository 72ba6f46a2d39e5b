//! Decoding what the sink sent, with tarn-proto, into owned events for assertions.
#![allow(dead_code)]

pub mod server;

use std::collections::{BTreeMap, HashMap};
use tarn_proto::native::{
    Event, MeasureValue, ProcessInfo, SpanPhase, StreamDecoder, StreamInfo, decode_block,
    decode_process, decode_stream,
};
use tarn_tracing::Route;

/// One decoded event, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Log {
        level: u32,
        target: String,
        msg: String,
        props: Vec<(String, String)>,
    },
    Measure {
        name: String,
        unit: String,
        value: f64,
        int: bool,
        props: Vec<(String, String)>,
    },
    Span {
        begin: bool,
        name: String,
        span_id: Option<u64>,
        parent: Option<u64>,
        depth: Option<u32>,
    },
}

#[derive(Debug, Clone)]
pub struct Decoded {
    pub process: Option<ProcessInfo>,
    pub streams: HashMap<String, StreamInfo>,
    /// (stream id, time in ticks, event), in the order sent.
    pub events: Vec<(String, i64, Ev)>,
    /// Per stream: (object_offset, nb_objects, begin_ticks, end_ticks) of each block.
    pub blocks: BTreeMap<String, Vec<(i64, i32, i64, i64)>>,
    /// Order of the routes as sent.
    pub routes: Vec<Route>,
}

impl Decoded {
    pub fn thread_name(&self, stream_id: &str) -> Option<&str> {
        self.streams
            .get(stream_id)
            .and_then(|s| s.properties.get("thread-name"))
            .map(String::as_str)
    }

    pub fn logs(&self) -> Vec<&Ev> {
        self.events
            .iter()
            .map(|(_, _, e)| e)
            .filter(|e| matches!(e, Ev::Log { .. }))
            .collect()
    }

    pub fn has_log(&self, msg: &str) -> bool {
        self.logs()
            .iter()
            .any(|e| matches!(e, Ev::Log { msg: m, .. } if m == msg))
    }
}

pub fn decode(requests: &[(Route, Vec<u8>)]) -> Decoded {
    let mut out = Decoded {
        process: None,
        streams: HashMap::new(),
        events: Vec::new(),
        blocks: BTreeMap::new(),
        routes: Vec::new(),
    };
    for (route, body) in requests {
        out.routes.push(*route);
        match route {
            Route::Process => out.process = Some(decode_process(body).expect("process decodes")),
            Route::Stream => {
                let s = decode_stream(body).expect("stream decodes");
                out.streams.insert(s.stream_id.clone(), s);
            }
            Route::Block => {
                let block = decode_block(body).expect("block decodes");
                let stream = out
                    .streams
                    .get(&block.stream_id)
                    .expect("stream sent before its block");
                out.blocks
                    .entry(block.stream_id.clone())
                    .or_default()
                    .push((
                        block.object_offset,
                        block.nb_objects,
                        block.begin_ticks,
                        block.end_ticks,
                    ));
                let decoder = StreamDecoder::from_stream(stream);
                let content = decoder
                    .decode_payload(&block.payload, 256 << 20)
                    .expect("payload decodes");
                let mut n = 0;
                for event in decoder.events(&content) {
                    let event = event.expect("event decodes");
                    n += 1;
                    let props = |p: Option<&tarn_proto::native::PropertySet>| {
                        let mut v: Vec<(String, String)> = p
                            .map(|p| {
                                p.iter()
                                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        v.sort();
                        v
                    };
                    let (time, ev) = match event {
                        Event::Log(l) => (
                            l.time,
                            Ev::Log {
                                level: l.level,
                                target: l.target.to_owned(),
                                msg: l.msg.to_string(),
                                props: props(l.properties),
                            },
                        ),
                        Event::Measure(m) => (
                            m.time,
                            Ev::Measure {
                                name: m.name.to_owned(),
                                unit: m.unit.to_owned(),
                                value: m.value.as_f64(),
                                int: matches!(m.value, MeasureValue::Int(_)),
                                props: props(m.properties),
                            },
                        ),
                        Event::Span(s) => (
                            s.time,
                            Ev::Span {
                                begin: s.phase == SpanPhase::Begin,
                                name: s.name.to_owned(),
                                span_id: s.async_span.map(|a| a.span_id),
                                parent: s.async_span.map(|a| a.parent_span_id),
                                depth: s.async_span.map(|a| a.depth),
                            },
                        ),
                        other => panic!("unexpected event {other:?}"),
                    };
                    assert!(
                        time >= block.begin_ticks
                            + out.process.as_ref().map_or(0, |p| p.start_ticks)
                            && time
                                <= block.end_ticks
                                    + out.process.as_ref().map_or(0, |p| p.start_ticks),
                        "event time inside its block"
                    );
                    out.events.push((block.stream_id.clone(), time, ev));
                }
                assert_eq!(n, block.nb_objects, "nb_objects matches the events");
            }
        }
    }
    out
}
