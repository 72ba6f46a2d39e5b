//! Transit records, dependencies and objects driven by a stream's type descriptions.
//!
//! Input layout: byte 0 picks the type descriptions (`0..=3`: upstream 0.33's lists for the
//! log, metrics, thread and image streams; otherwise a CBOR `Vec<Udt>` for the objects,
//! whose length is in bytes 1-2, followed by a CBOR `Vec<Udt>` for the dependencies of the
//! same length encoding), then a u16 length of the dependency buffer, the dependency
//! buffer, and the object buffer (the rest). Decoded output is bounded by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarn_proto::native::*;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = data.split_at_checked(n)?;
    *data = tail;
    Some(head)
}

fn len16(data: &mut &[u8]) -> Option<usize> {
    let b = take(data, 2)?;
    Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let Some(&[mode]) = take(&mut rest, 1) else {
        return;
    };
    let (deps_udts, obj_udts) = match mode {
        0 => (
            StreamKind::Log.dependencies_metadata(),
            StreamKind::Log.objects_metadata(),
        ),
        1 => (
            StreamKind::Metrics.dependencies_metadata(),
            StreamKind::Metrics.objects_metadata(),
        ),
        2 => (
            StreamKind::Thread.dependencies_metadata(),
            StreamKind::Thread.objects_metadata(),
        ),
        3 => (
            StreamKind::Image.dependencies_metadata(),
            StreamKind::Image.objects_metadata(),
        ),
        _ => {
            let Some(n) = len16(&mut rest) else { return };
            let Some(objs) = take(&mut rest, n).and_then(|b| decode_udts(b).ok()) else {
                return;
            };
            let Some(n) = len16(&mut rest) else { return };
            let Some(deps) = take(&mut rest, n).and_then(|b| decode_udts(b).ok()) else {
                return;
            };
            (deps, objs)
        }
    };
    let Some(n) = len16(&mut rest) else { return };
    let Some(deps_buf) = take(&mut rest, n) else {
        return;
    };
    let objects = rest;

    // Framing alone.
    let mut count = 0;
    for record in records(objects, &obj_udts) {
        match record {
            Ok(r) => {
                assert!(r.offset < objects.len());
                assert!(r.payload.len() < objects.len());
                count += 1;
            }
            Err(_) => break,
        }
    }
    assert!(count <= objects.len());

    let deps = parse_dependencies(deps_buf, &deps_udts).unwrap_or_default();
    assert!(deps.len() <= deps_buf.len());

    // Typed events.
    let decoder = StreamDecoder::new(deps_udts.clone(), obj_udts.clone());
    let mut events = 0;
    for event in decoder.events_of(objects, &deps) {
        events += 1;
        if let Ok(Event::Image(image)) = event {
            assert!(image.data.len() <= objects.len());
        }
    }
    assert!(events <= objects.len());

    // Generic objects, and plans.
    let parser = ObjectParser::new(&obj_udts);
    for record in records(objects, &obj_udts).flatten() {
        let udt = &obj_udts[usize::from(record.type_index)];
        if let Ok(object) = parser.parse(udt, record.payload, &deps) {
            assert!(object.members.len() <= limits::member_budget(record.payload.len()));
        }
        if udt.size > 0 {
            let plan = Plan::new(udt, &obj_udts);
            for m in &udt.members {
                if let Ok(Some(field)) = plan.optional_field("time") {
                    let _ = field.read(record.payload);
                }
                let _ = resolve_field(udt, m, &obj_udts).map(|f| f.read(record.payload));
            }
        }
    }
});
