//! OTLP: normalization of each signal into canonical rows, and the HTTP and gRPC
//! front ends that call it.

pub mod convert;
pub mod http;
pub mod traces;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use tarn_lakehouse::catalog::ProcessRecord;
use tarn_lakehouse::rows::ProcessesBuilder;
use tarn_lakehouse::schema::TableKind;
use tarn_proto::otlp::resource::v1::Resource;

use self::convert::{ResourceProcess, append_process_row};

/// Records left out of an export because they were invalid (OTLP partial success).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    pub count: i64,
    /// The first problem met, as the message of the partial-success response.
    pub message: Option<String>,
}

impl Rejections {
    pub fn reject(&mut self, problem: &str) {
        self.count += 1;
        if self.message.is_none() {
            self.message = Some(problem.to_owned());
        }
    }

    /// The partial-success message: the first problem, with the count.
    pub fn summary(&self) -> String {
        match &self.message {
            Some(message) => format!("{} record(s) rejected; first: {message}", self.count),
            None => String::new(),
        }
    }
}

/// An export request normalized into canonical rows.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Rows per table, ready for the writer.
    pub batches: Vec<(TableKind, Result<RecordBatch, ArrowError>)>,
    /// The processes (resources) the rows belong to, in the order of `process_rows`.
    pub processes: Vec<ProcessRecord>,
    /// One `processes` row per entry of `processes`.
    pub process_rows: ProcessesBuilder,
    pub rejections: Rejections,
}

impl Normalized {
    fn add_process(
        &mut self,
        process: ResourceProcess,
        resource: Option<&Resource>,
        schema_url: &str,
    ) {
        if self
            .processes
            .iter()
            .any(|known| known.process_id == process.record.process_id)
        {
            return;
        }
        append_process_row(
            &mut self.process_rows,
            &process.record,
            resource,
            schema_url,
        );
        self.processes.push(process.record);
    }

    fn push_batch(&mut self, table: TableKind, batch: Result<RecordBatch, ArrowError>) {
        self.batches.push((table, batch));
    }
}
