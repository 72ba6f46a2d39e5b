//! SQL behaviour as sqllogictest files (`gateway/tests/slt/*.slt`), run against the real
//! FlightSQL endpoint of a server holding known data. The runner is ours and reads the
//! subset of the format the files use (`statement ok`, `statement error <text>`,
//! `query <types> [rowsort]`); the `sqllogictest` crate would add fifteen crates and a
//! second `rand` to the build for the same.

use std::path::Path;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use prost::Message;

use crate::harness::Server;
use crate::otlp_data::sample_traces;

/// One record of a `.slt` file.
#[derive(Debug)]
enum Record {
    /// `statement ok`: the SQL runs without error.
    StatementOk { line: usize, sql: String },
    /// `statement error [text]`: the SQL fails, with `text` in the message when given.
    StatementError {
        line: usize,
        sql: String,
        expected: String,
    },
    /// `query <types> [rowsort]`: the SQL returns exactly these rows (values joined by
    /// one space), one type letter per column: `I` integer, `R` float, `T` anything else
    /// (`B` booleans are text too).
    Query {
        line: usize,
        sql: String,
        types: String,
        rowsort: bool,
        expected: Vec<String>,
    },
}

/// Parses the subset of the sqllogictest format the files here use; anything else is an
/// error, so a typo cannot silently skip a check.
fn parse(text: &str) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line_number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let mut sql = Vec::new();
        let mut expected = Vec::new();
        let mut in_results = false;
        while let Some((_, next)) = lines.peek() {
            if next.trim().is_empty() {
                break;
            }
            let (_, next) = lines.next().expect("peeked");
            if kind == "query" && next.trim() == "----" {
                in_results = true;
            } else if in_results {
                expected.push(normalize(next));
            } else {
                sql.push(next);
            }
        }
        let sql = sql.join("\n");
        if sql.trim().is_empty() {
            return Err(format!("line {line_number}: `{trimmed}` has no SQL"));
        }
        match (kind, words.next()) {
            ("statement", Some("ok")) => records.push(Record::StatementOk {
                line: line_number,
                sql,
            }),
            ("statement", Some("error")) => records.push(Record::StatementError {
                line: line_number,
                sql,
                expected: words.collect::<Vec<_>>().join(" "),
            }),
            ("query", Some(types)) if types.chars().all(|c| "ITRB".contains(c)) => {
                let rowsort = match words.next() {
                    None | Some("nosort") => false,
                    Some("rowsort") => true,
                    Some(other) => {
                        return Err(format!("line {line_number}: unknown sort mode {other}"));
                    }
                };
                if !in_results {
                    return Err(format!("line {line_number}: query without ----"));
                }
                records.push(Record::Query {
                    line: line_number,
                    sql,
                    types: types.to_owned(),
                    rowsort,
                    expected,
                });
            }
            _ => return Err(format!("line {line_number}: cannot read `{trimmed}`")),
        }
    }
    Ok(records)
}

/// Whitespace runs become one space, so alignment in the files does not matter.
fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn type_letter(data_type: &DataType) -> char {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => 'I',
        DataType::Float16 | DataType::Float32 | DataType::Float64 => 'R',
        DataType::Boolean => 'B',
        _ => 'T',
    }
}

/// The rows as text: NULL for null, `(empty)` for an empty string.
fn rows(batches: &[RecordBatch]) -> Result<Vec<String>, String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .zip(batch.columns())
                .map(|(formatter, column)| {
                    let text = formatter.value(row).to_string();
                    if text.is_empty() && column.is_valid(row) {
                        "(empty)".to_owned()
                    } else {
                        text
                    }
                })
                .collect();
            rows.push(normalize(&values.join(" ")));
        }
    }
    Ok(rows)
}

/// Runs `sql` through FlightSQL (GetFlightInfo, then DoGet on every endpoint).
async fn run_sql(
    address: std::net::SocketAddr,
    sql: &str,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>), String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .map_err(|e| e.to_string())?;
    let schema = info
        .clone()
        .try_decode_schema()
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        let mut received: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream)
            .await
            .map_err(|e| e.to_string())?;
        batches.append(&mut received);
    }
    Ok((std::sync::Arc::new(schema), batches))
}

/// Runs one record; the error says what differed.
async fn check(address: std::net::SocketAddr, record: &Record) -> Result<(), String> {
    match record {
        Record::StatementOk { sql, .. } => run_sql(address, sql).await.map(|_| ()),
        Record::StatementError { sql, expected, .. } => match run_sql(address, sql).await {
            Ok(_) => Err("succeeded, expected an error".to_owned()),
            Err(message) if message.contains(expected.as_str()) => Ok(()),
            Err(message) => Err(format!("error `{message}` does not contain `{expected}`")),
        },
        Record::Query {
            sql,
            types,
            rowsort,
            expected,
            ..
        } => {
            let (schema, batches) = run_sql(address, sql).await?;
            let actual_types: String = schema
                .fields()
                .iter()
                .map(|field| type_letter(field.data_type()))
                .collect();
            // `B` columns may be declared `T`, as sqllogictest files often do.
            let types_match = actual_types.len() == types.len()
                && actual_types
                    .chars()
                    .zip(types.chars())
                    .all(|(actual, declared)| {
                        actual == declared || (actual == 'B' && declared == 'T')
                    });
            if !types_match {
                return Err(format!("column types {actual_types}, declared {types}"));
            }
            let mut actual = rows(&batches)?;
            let mut expected = expected.clone();
            if *rowsort {
                actual.sort();
                expected.sort();
            }
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "rows differ\n--- expected\n{}\n--- actual\n{}",
                    expected.join("\n"),
                    actual.join("\n")
                ))
            }
        }
    }
}

#[tokio::test]
async fn sql_logic_tests() {
    let server = Server::start_temp(&[]);
    let body = sample_traces("checkout").encode_to_vec();
    assert_eq!(
        server
            .post("/v1/traces", "application/x-protobuf", None, body)
            .await
            .status,
        200
    );
    for (path, json) in [
        ("/v1/logs", crate::protocols::LOGS_JSON),
        ("/v1/metrics", crate::protocols::METRICS_JSON),
    ] {
        let response = server
            .post(path, "application/json", None, json.as_bytes().to_vec())
            .await;
        assert_eq!(response.status, 200);
    }
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let address = server.flightsql;
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let records = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for record in &records {
            let line = match record {
                Record::StatementOk { line, .. }
                | Record::StatementError { line, .. }
                | Record::Query { line, .. } => *line,
            };
            checked += 1;
            if let Err(message) = check(address, record).await {
                failures.push(format!("{}:{line}: {message}", file.display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} records were read");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
