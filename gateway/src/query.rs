//! `tarn query`: a FlightSQL client that prints one query's result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Endpoint;

use crate::cli::{OutputFormat, QueryArgs};

/// Runs the query and prints it; the exit code says whether it worked.
pub fn run(args: QueryArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tarn query: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(query(&args)) {
        Ok(batches) => match print(&batches, args.format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tarn query: {error:#}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("tarn query: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `grpc://host:port` (Micromegas' form) or `http://host:port` → an HTTP/2 endpoint URL.
fn endpoint_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("grpc+tls://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("grpc://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

/// Runs `args.sql` and collects every batch.
pub async fn query(args: &QueryArgs) -> anyhow::Result<Vec<RecordBatch>> {
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("MICROMEGAS_ANALYTICS_URI").ok())
        .unwrap_or_else(|| "grpc://127.0.0.1:50051".to_owned());
    let url = endpoint_url(&url);
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad FlightSQL URL {url}"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(key) = &args.api_key {
        client.set_token(key.clone());
    }
    if let Some(begin) = &args.begin {
        client.set_header("query_range_begin", begin);
    }
    if let Some(end) = &args.end {
        client.set_header("query_range_end", end);
    }
    let info = client
        .execute(args.sql.clone(), None)
        .await
        .context("query failed")?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client
            .do_get(ticket)
            .await
            .context("fetching results failed")?;
        let mut received: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .context("reading results failed")?;
        batches.append(&mut received);
    }
    Ok(batches)
}

fn print(batches: &[RecordBatch], format: OutputFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}
