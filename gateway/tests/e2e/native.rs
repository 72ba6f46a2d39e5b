//! The native protocol with the real request bodies captured from
//! `micromegas-telemetry-sink` 0.33 (payloads as CBOR byte strings) and 0.28 (payloads as
//! legacy integer arrays), replayed in their recorded order and in other orders. The
//! captures' README says what the program emitted; every event is checked.

use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};

use crate::harness::Server;

fn captures(version: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../testdata/micromegas/sink-{version}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cbor"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let route = stem.split_once('-').unwrap().1.to_owned();
            (route, std::fs::read(&path).unwrap())
        })
        .collect()
}

async fn replay(server: &Server, requests: &[(String, Vec<u8>)]) {
    for (route, body) in requests {
        let response = server
            .post_native(
                &format!("/ingestion/{route}"),
                "application/octet-stream",
                None,
                body.clone(),
            )
            .await;
        assert_eq!(
            response.status,
            200,
            "{route}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
}

fn one(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&batches[0].schema(), batches).unwrap()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let array =
        arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
    array
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or("NULL").to_owned())
        .collect()
}

/// Checks the events of one capture, as its README describes them.
async fn check(server: &Server, version: &str) {
    let exe = format!("/usr/local/bin/example-app-{}", version.replace('.', ""));
    let marker = format!("golden{}", version.replace('.', ""));
    // The programs' module (log target, span name prefix) differs between the captures.
    let module = if version == "0.33" {
        "acc_native_client"
    } else {
        "golden_app_028"
    };
    let logs = one(
        &server
            .query(&format!(
                "SELECT msg, level, target FROM log_entries WHERE exe = '{exe}' AND target = '{module}' ORDER BY time"
            ))
            .await,
    );
    let mut expected = vec!["acc static log line".to_owned()];
    expected.extend((0..10).map(|i| format!("acc formatted log {i} {marker}")));
    expected.push("acc done 20".to_owned());
    assert_eq!(strings(&logs, "msg"), expected, "{version}");
    let levels: Vec<i32> = logs
        .column_by_name("level")
        .unwrap()
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    assert_eq!(levels[0], 4);
    assert_eq!(levels[11], 3, "warn");
    let all_logs = one(&server
        .query(&format!(
            "SELECT count(*) FROM log_entries WHERE exe = '{exe}'"
        ))
        .await);
    let sink_logs = if version == "0.33" { 2 } else { 0 };
    assert_eq!(
        all_logs.column(0).as_primitive::<Int64Type>().value(0),
        12 + sink_logs,
        "{version}"
    );

    let measures = one(
        &server
            .query(&format!(
                "SELECT name, unit, value, int_value FROM measures WHERE exe = '{exe}' ORDER BY name, time"
            ))
            .await,
    );
    let names = strings(&measures, "name");
    assert_eq!(names.iter().filter(|n| *n == "acc_int_metric").count(), 10);
    assert_eq!(
        names.iter().filter(|n| *n == "acc_float_metric").count(),
        10
    );
    let values: Vec<f64> = measures
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>()
        .values()
        .to_vec();
    let floats: Vec<f64> = (0..10).map(|i| f64::from(i) * 1.5).collect();
    let ints: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(
        values[..10],
        floats[..],
        "acc_float_metric values, in time order"
    );
    assert_eq!(
        values[10..],
        ints[..],
        "acc_int_metric values, in time order"
    );
    let units = strings(&measures, "unit");
    assert_eq!((units[0].as_str(), units[10].as_str()), ("ms", "count"));

    let spans = one(
        &server
            .query(&format!(
                "SELECT name, count(*) AS n, min(duration_ns) AS shortest, min(depth) AS depth FROM spans \
                 WHERE exe = '{exe}' GROUP BY name ORDER BY name"
            ))
            .await,
    );
    let counts: Vec<i64> = spans
        .column_by_name("n")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let shortest: Vec<i64> = spans
        .column_by_name("shortest")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let by_name: std::collections::HashMap<String, (i64, i64)> = strings(&spans, "name")
        .into_iter()
        .zip(counts.into_iter().zip(shortest))
        .collect();
    let expected = [
        ("acc_outer_span".to_owned(), 10),
        ("acc_inner_span".to_owned(), 10),
        (format!("{module}::acc_sync_leaf"), 10),
        (format!("{module}::acc_async_leaf"), 5),
    ];
    assert_eq!(by_name.len(), expected.len(), "{version}: {by_name:?}");
    for (name, count) in &expected {
        let (found, shortest) = by_name
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("{version}: no {name}"));
        assert_eq!(found, *count, "{version}: {name}");
        assert!(shortest > 0, "{version}: {name} lasts {shortest} ns");
    }
    let (_, async_shortest) = by_name[&format!("{module}::acc_async_leaf")];
    assert!(
        async_shortest >= 2_000_000,
        "async leaves sleep 2 ms: {async_shortest}"
    );
    // Nesting: each inner span's parent is an outer span, each leaf's parent an inner one.
    let nesting = one(
        &server
            .query(&format!(
                "SELECT child.name AS child, parent.name AS parent, count(*) AS n, \
                 sum(CASE WHEN child.start_time_unix_nano >= parent.start_time_unix_nano \
                          AND child.end_time_unix_nano <= parent.end_time_unix_nano THEN 1 ELSE 0 END) AS inside \
                 FROM spans child JOIN spans parent \
                   ON child.parent_span_id = parent.span_id AND child.stream_id = parent.stream_id \
                 WHERE child.exe = '{exe}' GROUP BY 1, 2 ORDER BY 1"
            ))
            .await,
    );
    assert_eq!(
        strings(&nesting, "child"),
        [
            "acc_inner_span".to_owned(),
            format!("{module}::acc_sync_leaf")
        ]
    );
    assert_eq!(
        strings(&nesting, "parent"),
        ["acc_outer_span", "acc_inner_span"]
    );
    let inside: Vec<i64> = nesting
        .column_by_name("inside")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(inside, [10, 10]);

    let processes = one(
        &server
            .query(&format!(
                "SELECT tsc_frequency, property_get(properties, 'acc.marker') AS marker, source FROM processes WHERE exe = '{exe}'"
            ))
            .await,
    );
    assert_eq!(strings(&processes, "marker"), [marker]);
    assert_eq!(strings(&processes, "source"), ["native"]);
    let streams = one(
        &server
            .query(&format!(
                "SELECT s.format, count(*) FROM streams s JOIN processes p USING (process_id) WHERE p.exe = '{exe}' GROUP BY 1"
            ))
            .await,
    );
    assert_eq!(strings(&streams, "format"), ["micromegas-transit"]);
    check_micromegas_views(server, version, &exe, module).await;
}

fn int(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array =
        arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Int64).unwrap();
    array.as_primitive::<Int64Type>().values().to_vec()
}

/// Micromegas' own views and documented queries over the same events.
async fn check_micromegas_views(server: &Server, version: &str, exe: &str, module: &str) {
    let process = one(&server
        .query(&format!(
            "SELECT DISTINCT process_id FROM processes WHERE exe = '{exe}'"
        ))
        .await);
    let process = strings(&process, "process_id").remove(0);
    // Every stream with thread spans: its view has those spans plus one root row.
    let streams = one(&server
        .query(&format!(
            "SELECT stream_id, count(*) AS n, sum(CASE WHEN depth = 0 THEN 1 ELSE 0 END) AS top \
                 FROM spans WHERE process_id = '{process}' AND span_id < '8000000000000000' \
                 GROUP BY stream_id ORDER BY stream_id"
        ))
        .await);
    let (counts, tops) = (int(&streams, "n"), int(&streams, "top"));
    assert_eq!(counts.iter().sum::<i64>(), 30, "{version}: thread spans");
    for (index, stream) in strings(&streams, "stream_id").iter().enumerate() {
        let view = one(&server
            .query(&format!(
                "SELECT id, parent, depth, hash, duration, name, line, \
                       CAST(\"end\" - \"begin\" AS BIGINT) AS span \
                     FROM view_instance('thread_spans', '{stream}') ORDER BY \"begin\", depth"
            ))
            .await);
        assert_eq!(
            view.num_rows() as i64,
            counts[index] + 1,
            "{version}: {stream}"
        );
        let (ids, parents, depths) = (int(&view, "id"), int(&view, "parent"), int(&view, "depth"));
        // The root row first, then top-level spans at depth 1 under it.
        assert_eq!((ids[0], parents[0], depths[0]), (-1, 0, 0));
        let top = depths.iter().filter(|depth| **depth == 1).count() as i64;
        assert_eq!(top, tops[index], "{version}: top-level spans");
        // Ids are begin-event positions: unique, and every parent is a row of the view.
        let known: std::collections::HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(known.len(), ids.len());
        assert!(parents[1..].iter().all(|parent| known.contains(parent)));
        assert_eq!(int(&view, "duration")[1..], int(&view, "span")[1..]);
        assert!(
            int(&view, "line")[1..].iter().all(|line| *line > 0),
            "{version}: lines"
        );
        let names = strings(&view, "name");
        let hashes = int(&view, "hash");
        let outer = names.iter().position(|name| name == "acc_outer_span");
        if let Some(outer) = outer {
            // The same description hashes the same, a different one differently.
            let again = names
                .iter()
                .rposition(|name| name == "acc_outer_span")
                .unwrap();
            assert_eq!(hashes[outer], hashes[again]);
            assert_ne!(hashes[outer], hashes[0]);
        }
    }
    // The Python README's query, verbatim.
    let stream = &strings(&streams, "stream_id")[0];
    let top = one(&server
        .query(&format!(
            "SELECT begin, end, duration, name FROM view_instance('thread_spans', '{stream}') \
                 WHERE depth=1 ORDER BY duration DESC LIMIT 10"
        ))
        .await);
    assert!(top.num_rows() > 0);
    assert!(
        strings(&top, "name")
            .iter()
            .all(|name| name == "acc_outer_span")
    );

    // Async spans: a begin and an end event each, paired by the documented query.
    let events = one(&server
        .query(&format!(
            "SELECT event_type, count(*) AS n, count(DISTINCT span_id) AS ids, min(span_id) AS low \
                 FROM view_instance('async_events', '{process}') GROUP BY 1 ORDER BY 1"
        ))
        .await);
    assert_eq!(strings(&events, "event_type"), ["begin", "end"]);
    assert_eq!(int(&events, "n"), [5, 5]);
    assert_eq!(int(&events, "ids"), [5, 5]);
    assert!(
        int(&events, "low").iter().all(|id| *id > 0),
        "top bit cleared"
    );
    let documented = one(
        &server
            .query(&format!(
                "SELECT name, depth, AVG(duration_ms) as avg_duration, COUNT(*) as operation_count \
                 FROM ( SELECT begin_events.name, begin_events.depth, \
                   CAST((end_events.time - begin_events.time) AS BIGINT) / 1000000 as duration_ms \
                   FROM (SELECT * FROM view_instance('async_events', '{process}') WHERE event_type = 'begin') begin_events \
                   LEFT JOIN (SELECT * FROM view_instance('async_events', '{process}') WHERE event_type = 'end') end_events \
                   ON begin_events.span_id = end_events.span_id \
                   WHERE end_events.span_id IS NOT NULL ) \
                 GROUP BY name, depth ORDER BY avg_duration DESC"
            ))
            .await,
    );
    assert_eq!(
        strings(&documented, "name"),
        [format!("{module}::acc_async_leaf")]
    );
    assert_eq!(int(&documented, "operation_count"), [5]);
    // The async leaves sleep 2 ms.
    let average = arrow::compute::cast(
        documented.column_by_name("avg_duration").unwrap(),
        &DataType::Float64,
    )
    .unwrap();
    assert!(average.as_primitive::<Float64Type>().value(0) >= 2.0);

    // Per-process logs and measures, and log_stats, agree with the tables.
    for (view, table) in [("log_entries", "log_entries"), ("measures", "measures")] {
        let counts = one(&server
            .query(&format!(
                "SELECT (SELECT count(*) FROM view_instance('{view}', '{process}')) AS instance, \
                       (SELECT count(*) FROM {table} WHERE process_id = '{process}') AS direct, \
                       (SELECT count(*) FROM view_instance('{view}', 'global')) AS global, \
                       (SELECT count(*) FROM {table}) AS everything"
            ))
            .await);
        assert_eq!(int(&counts, "instance"), int(&counts, "direct"), "{view}");
        assert_eq!(int(&counts, "global"), int(&counts, "everything"), "{view}");
        assert!(int(&counts, "instance")[0] > 0, "{view}");
    }
    let stats = one(&server
        .query(&format!(
            "SELECT (SELECT sum(count) FROM log_stats WHERE process_id = '{process}') AS stats, \
                   (SELECT count(*) FROM log_entries WHERE process_id = '{process}') AS logs"
        ))
        .await);
    assert_eq!(int(&stats, "stats"), int(&stats, "logs"));
    // process_spans: every stream's call tree (with its root row), then the async spans.
    let by_stream = one(&server
        .query(&format!(
            "SELECT stream_id, thread_name, count(*) AS n, min(depth) AS low, \
                    sum(CASE WHEN id = -1 THEN 1 ELSE 0 END) AS roots \
                 FROM process_spans('{process}', 'thread') GROUP BY 1, 2 ORDER BY 1"
        ))
        .await);
    assert_eq!(
        strings(&by_stream, "stream_id"),
        strings(&streams, "stream_id"),
        "{version}: process_spans streams"
    );
    let with_roots: Vec<i64> = counts.iter().map(|n| n + 1).collect();
    assert_eq!(int(&by_stream, "n"), with_roots, "{version}");
    assert!(int(&by_stream, "roots").iter().all(|roots| *roots == 1));
    assert!(int(&by_stream, "low").iter().all(|low| *low == 0));
    assert!(
        strings(&by_stream, "thread_name")
            .iter()
            .all(|name| !name.is_empty())
    );
    let both = one(&server
        .query(&format!(
            "SELECT stream_id, thread_name, name, depth FROM process_spans('{process}', 'both')"
        ))
        .await);
    let lanes = strings(&both, "thread_name");
    assert_eq!(lanes.len() as i64, with_roots.iter().sum::<i64>() + 5);
    // The async spans: their own lane, no stream.
    let asyncs: Vec<usize> = (0..lanes.len()).filter(|&i| lanes[i] == "async").collect();
    assert_eq!(asyncs.len(), 5, "{version}: async rows");
    let (stream_ids, names) = (strings(&both, "stream_id"), strings(&both, "name"));
    assert!(asyncs.iter().all(|&i| stream_ids[i].is_empty()));
    assert!(
        asyncs
            .iter()
            .all(|&i| names[i] == format!("{module}::acc_async_leaf"))
    );
    // The notebook query: lanes in order, each by begin time.
    let notebook = one(&server
        .query(&format!(
            "SELECT id, parent, name, begin, \"end\", depth, thread_name AS lane \
                 FROM process_spans('{process}', 'both') ORDER BY lane, begin"
        ))
        .await);
    assert_eq!(notebook.num_rows(), lanes.len());
    // The documented query.
    let documented = one(&server
        .query(&format!(
            "SELECT thread_name, name, AVG(duration) / 1000000.0 as avg_ms \
                 FROM process_spans('{process}', 'both') WHERE depth = 0 \
                 GROUP BY thread_name, name ORDER BY avg_ms DESC"
        ))
        .await);
    assert!(documented.num_rows() > 0);
    let error = server
        .try_query(&format!(
            "SELECT * FROM process_spans('{process}', 'threads')"
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("span_types must be"), "{error}");
    let error = server
        .try_query("SELECT * FROM view_instance('thread_spans', 'global')")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no global instance"), "{error}");
}

fn permuted(requests: &[(String, Vec<u8>)], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut state = seed;
    let mut keyed: Vec<(u64, (String, Vec<u8>))> = requests
        .iter()
        .cloned()
        .map(|request| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state, request)
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    keyed.into_iter().map(|(_, request)| request).collect()
}

#[tokio::test]
async fn golden_captures_in_recorded_order() {
    let server = Server::start_temp(&[]);
    for version in ["0.33", "0.28"] {
        replay(&server, &captures(version)).await;
        check(&server, version).await;
    }
}

#[tokio::test]
async fn golden_captures_in_other_orders_and_twice() {
    for (seed, version) in [(1, "0.33"), (2, "0.33"), (3, "0.28"), (4, "0.28")] {
        let server = Server::start_temp(&[]);
        let requests = captures(version);
        let shuffled = permuted(&requests, seed);
        replay(&server, &shuffled).await;
        check(&server, version).await;
        // Everything again (the clients retry): nothing changes.
        replay(&server, &requests).await;
        check(&server, version).await;
    }
    // Blocks first, then streams, then the process.
    let server = Server::start_temp(&[]);
    let mut requests = captures("0.33");
    requests.reverse();
    replay(&server, &requests).await;
    check(&server, "0.33").await;
}

#[tokio::test]
async fn malformed_native_bodies_are_400_and_change_nothing() {
    let server = Server::start_temp(&[]);
    let requests = captures("0.33");
    for (route, body) in &requests {
        for bad in [b"garbage".to_vec(), body[..body.len() / 2].to_vec()] {
            let response = server
                .post_native(
                    &format!("/ingestion/{route}"),
                    "application/octet-stream",
                    None,
                    bad,
                )
                .await;
            assert_eq!(response.status, 400, "{route}");
        }
    }
    let empty = server
        .post_native(
            "/ingestion/insert_block",
            "application/octet-stream",
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(empty.status, 400);
    replay(&server, &requests).await;
    check(&server, "0.33").await;
}
