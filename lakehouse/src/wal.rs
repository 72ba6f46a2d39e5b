//! The write-ahead log: what makes an acknowledgement a promise.
//!
//! Rows are appended to numbered segment files and fsync'd before the writer returns; one
//! fsync serves every request that arrived while the previous one ran (group commit).
//! After a crash, [`Wal::open`] reads the segments back; records whose sequence number a
//! table's Delta log already records (as the application transaction of this WAL) are
//! skipped, the rest go back into the fresh buffers and are committed again.
//!
//! # Format (version 3)
//!
//! A segment is `<first sequence, 20 digits>.wal`:
//!
//! ```text
//! header : "TARNWAL1" | u32 LE version = 3 | u32 LE reserved = 0 | u64 LE first sequence
//! record : u32 LE body length | u32 LE CRC-32 of body | body
//! body   : u64 LE sequence | u8 table (1-6) | rows
//!        | u64 LE sequence | u8 0           | note (opaque bytes; since version 2)
//! rows   : u32 LE row count | u16 LE n | n × u16 LE column index | u32 LE length of A
//!          | A: Arrow IPC stream (schema + one batch) of the other columns
//!          | B: Arrow IPC stream of the n columns' first row (only when n > 0)
//! ```
//!
//! The n columns are those whose every row holds the same value (a request's or a native
//! block's identity: process, stream, service, host, insert time), stored once instead of
//! once per row; they were most of a native row's bytes. Versions 1 and 2 store `rows` as
//! one Arrow IPC stream of the whole batch.
//!
//! A note is what the catalog must learn exactly when the rows before it become durable
//! (which native block they came from, the span pairing state after it). It is written
//! after the rows of its append, in the same write and fsync, and read back at open so the
//! catalog can be brought up to date after a crash. The rows of such an append carry
//! their table code plus 0x80: rows so marked that no note follows were cut by a crash in
//! mid-write, and are cut off at open like a torn record, so an append with a note is
//! durable whole or not at all. Version 1 segments hold no notes and are read as they are.
//!
//! A record is acknowledged only after its bytes are fsync'd whole, so a torn record can
//! only be the unacknowledged tail of the last segment: replay stops there and truncates.
//!
//! To add a format version: bump [`VERSION`], keep a reader for every older version in
//! [`read_segment`], and write only the newest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};
use crate::schema::TableKind;

pub const MAGIC: &[u8; 8] = b"TARNWAL1";
pub const VERSION: u32 = 3;
/// The table code of a note record.
const NOTE_CODE: u8 = 0;
/// Added to the table code of rows followed by a note in the same append: they count only
/// if the note is there too.
const NOTED_FLAG: u8 = 0x80;
const HEADER_LEN: u64 = 24;
/// Largest record body accepted when reading: a length beyond it is corruption.
const MAX_RECORD_BYTES: u32 = 1 << 30;

/// One durable record: rows for one table.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub table: TableKind,
    pub batch: RecordBatch,
}

/// Where durable records go once they are on disk, in sequence order (the fresh buffers).
pub trait DurableSink: Send + Sync + 'static {
    fn durable(&self, record: WalRecord);
}

fn table_code(table: TableKind) -> u8 {
    match table {
        TableKind::Spans => 1,
        TableKind::LogEntries => 2,
        TableKind::Measures => 3,
        TableKind::Histograms => 4,
        TableKind::Processes => 5,
        TableKind::Streams => 6,
    }
}

fn table_of_code(code: u8) -> Option<TableKind> {
    TableKind::ALL
        .into_iter()
        .find(|table| table_code(*table) == code)
}

/// Encodes a batch as the `rows` of a record (format version 3): its constant columns once,
/// the others as they are.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let rows = batch.num_rows();
    let too_big = || {
        Error::InvalidBatch(format!(
            "{rows} rows or their columns do not fit a WAL record"
        ))
    };
    let mut constant: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| is_constant(batch.column(i).as_ref()))
        .collect();
    if constant.len() == batch.num_columns() {
        // Keep one column whole: the other stream must carry the row count.
        constant.remove(0);
    }
    let varying: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !constant.contains(i))
        .collect();
    let varying_batch = batch.project(&varying)?;
    let mut out = Vec::with_capacity(ipc_size_hint(&varying_batch) + 16 + 2 * constant.len());
    out.extend_from_slice(&u32::try_from(rows).map_err(|_| too_big())?.to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(constant.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    for &index in &constant {
        out.extend_from_slice(&u16::try_from(index).map_err(|_| too_big())?.to_le_bytes());
    }
    let length_at = out.len();
    out.extend_from_slice(&0_u32.to_le_bytes());
    let start = out.len();
    write_ipc(&mut out, &varying_batch)?;
    let length = u32::try_from(out.len() - start).map_err(|_| too_big())?;
    out[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
    if !constant.is_empty() {
        write_ipc(&mut out, &batch.project(&constant)?.slice(0, 1))?;
    }
    Ok(out)
}

/// Appends `batch` to `out` as an Arrow IPC stream.
fn write_ipc(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    let mut writer = StreamWriter::try_new(out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}

/// Whether every row of `array` holds the same value (or every row is null). Checked for
/// strings and fixed-width primitives, the types of identity columns; others are kept whole.
fn is_constant(array: &dyn Array) -> bool {
    let rows = array.len();
    let data_type = array.data_type();
    if rows < 2 || !(*data_type == DataType::Utf8 || data_type.is_primitive()) {
        return false;
    }
    let nulls = array.null_count();
    if nulls == rows {
        return true;
    }
    if nulls > 0 {
        return false;
    }
    match data_type {
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            let offsets = strings.value_offsets();
            let first = offsets[0];
            let step = offsets[1] - first;
            let Ok(width) = usize::try_from(step) else {
                return false;
            };
            let mut expected = first;
            for &offset in offsets {
                if offset != expected {
                    return false;
                }
                expected = expected.wrapping_add(step);
            }
            let (Ok(start), Ok(end)) = (usize::try_from(first), usize::try_from(offsets[rows]))
            else {
                return false;
            };
            periodic(&strings.value_data()[start..end], width)
        }
        _ => {
            let Some(width) = data_type.primitive_width() else {
                return false;
            };
            let data = array.to_data();
            let start = data.offset() * width;
            periodic(
                &data.buffers()[0].as_slice()[start..start + rows * width],
                width,
            )
        }
    }
}

/// Whether `bytes` repeats its first `width` bytes throughout (its length a multiple of
/// `width`): one comparison of the bytes with themselves shifted by `width`.
fn periodic(bytes: &[u8], width: usize) -> bool {
    width == 0 || bytes[width..] == bytes[..bytes.len() - width]
}

/// An upper estimate of a batch's IPC stream: its buffers, each padded to 64 bytes, and
/// room for the schema and the message headers.
fn ipc_size_hint(batch: &RecordBatch) -> usize {
    fn data_bytes(data: &arrow::array::ArrayData) -> usize {
        let own: usize = data.buffers().iter().map(|b| b.len() + 64).sum();
        let nulls = data.nulls().map_or(0, |n| n.buffer().len() + 64);
        own + nulls + data.child_data().iter().map(data_bytes).sum::<usize>()
    }
    let columns: usize = batch
        .columns()
        .iter()
        .map(|column| data_bytes(&column.to_data()))
        .sum();
    columns + 16_384
}

/// Decodes the `rows` of a record of format `version` (public for the fuzz target).
pub fn decode_batch(bytes: &[u8], version: u32) -> Result<RecordBatch> {
    if version < 3 {
        return read_ipc(bytes);
    }
    let corrupt = || Error::storage("WAL record rows are malformed");
    let u32_at = |at: usize| -> Result<u32> {
        let field = bytes.get(at..at + 4).ok_or_else(corrupt)?;
        Ok(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
    };
    let u16_at = |at: usize| -> Result<usize> {
        let field = bytes.get(at..at + 2).ok_or_else(corrupt)?;
        Ok(usize::from(u16::from_le_bytes([field[0], field[1]])))
    };
    let rows = usize::try_from(u32_at(0)?).map_err(|_| corrupt())?;
    let count = u16_at(4)?;
    let mut constant = Vec::with_capacity(count);
    for i in 0..count {
        constant.push(u16_at(6 + 2 * i)?);
    }
    let at = 6 + 2 * count;
    let length = usize::try_from(u32_at(at)?).map_err(|_| corrupt())?;
    let varying_bytes = bytes.get(at + 4..at + 4 + length).ok_or_else(corrupt)?;
    let varying = read_ipc(varying_bytes)?;
    if varying.num_rows() != rows {
        return Err(corrupt());
    }
    if constant.is_empty() {
        return Ok(varying);
    }
    let first_row = read_ipc(&bytes[at + 4 + length..])?;
    if first_row.num_columns() != count || first_row.num_rows() != 1 {
        return Err(corrupt());
    }
    let total = count + varying.num_columns();
    let zeros = arrow::array::UInt32Array::from(vec![0_u32; rows]);
    let mut fields = Vec::with_capacity(total);
    let mut columns = Vec::with_capacity(total);
    let (mut next_constant, mut next_varying) = (0, 0);
    for index in 0..total {
        if constant.get(next_constant) == Some(&index) {
            fields.push(first_row.schema().field(next_constant).clone());
            columns.push(arrow::compute::take(
                first_row.column(next_constant),
                &zeros,
                None,
            )?);
            next_constant += 1;
        } else {
            if next_varying == varying.num_columns() {
                return Err(corrupt());
            }
            fields.push(varying.schema().field(next_varying).clone());
            columns.push(Arc::clone(varying.column(next_varying)));
            next_varying += 1;
        }
    }
    if next_constant != count || next_varying != varying.num_columns() {
        return Err(corrupt());
    }
    let schema =
        arrow::datatypes::Schema::new_with_metadata(fields, varying.schema().metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

fn read_ipc(bytes: &[u8]) -> Result<RecordBatch> {
    // The push decoder takes a message's body from the bytes given, where the pull reader
    // first allocated whatever length the message claimed (a corrupt length aborted the
    // process). Some malformed messages still make arrow panic (a schema without fields,
    // for one): a record's bytes get here only once their CRC held, but a decoder must not
    // panic whatever it is given.
    let read = || -> Result<RecordBatch> {
        let mut decoder = StreamDecoder::new();
        let mut buffer = arrow::buffer::Buffer::from(bytes);
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer)? {
                return Ok(batch);
            }
        }
        decoder.finish()?;
        Err(Error::storage("WAL record holds no batch"))
    };
    std::panic::catch_unwind(read).unwrap_or_else(|_| {
        Err(Error::storage(
            "WAL record holds a malformed Arrow IPC stream",
        ))
    })
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> Error {
    Error::storage(format!("{what} {}: {error}", path.display()))
}

/// A segment already closed for writing, and the highest sequence it holds per table.
#[derive(Debug, Clone)]
struct ClosedSegment {
    path: PathBuf,
    bytes: u64,
    max_seq: BTreeMap<TableKind, u64>,
    /// The highest sequence of any record in it, notes included (0 when empty).
    last_seq: u64,
}

/// What the writer thread and the WAL handle share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes of all segments on disk.
    bytes: AtomicU64,
    /// Closed segments, oldest first.
    closed: std::sync::Mutex<Vec<ClosedSegment>>,
    /// Sequences of the notes written (or found at open) and not yet applied: the segments
    /// holding them, and those after, are kept.
    unapplied_notes: std::sync::Mutex<BTreeSet<u64>>,
}

/// Records to append, and where to say when they are durable: the records' sequence
/// numbers, then the note's if there is one.
struct Job {
    records: Vec<(TableKind, RecordBatch, Vec<u8>)>,
    note: Option<Vec<u8>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u64>>>,
}

impl Job {
    fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.2.len()).sum::<usize>()
            + self.note.as_ref().map_or(0, Vec::len)
    }
}

/// The write-ahead log of one gateway.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    id: String,
    sender: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed once it holds this many bytes.
    pub segment_bytes: u64,
    /// The lowest sequence number new records may get: one past the highest any table has
    /// committed. The log keeps its own numbering in its segment names too, but a sequence
    /// number reused after every segment was released would make new records look
    /// committed already, and they would be dropped.
    pub min_next_seq: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            min_next_seq: 1,
        }
    }
}

/// The log's contents as found at open.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<WalRecord>,
    /// Notes, with their sequence numbers, in the order written.
    pub notes: Vec<(u64, Vec<u8>)>,
    /// Bytes dropped from a torn tail (never acknowledged).
    pub truncated_bytes: u64,
}

/// What one segment holds.
#[derive(Debug, Default)]
struct Segment {
    records: Vec<WalRecord>,
    notes: Vec<(u64, Vec<u8>)>,
}

/// Reads one segment; returns what it holds, the offset just past the last good record,
/// and whether bytes follow it that are not a good record.
fn read_segment(path: &Path) -> Result<(Segment, u64, bool)> {
    let file = File::open(path).map_err(|e| io_error("opening", path, e))?;
    let length = file
        .metadata()
        .map_err(|e| io_error("reading", path, e))?
        .len();
    let mut reader = BufReader::new(file);
    let mut header = [0_u8; HEADER_LEN as usize];
    if reader.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Err(Error::storage(format!(
            "{} is not a Tarn WAL segment",
            path.display()
        )));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if !(1..=VERSION).contains(&version) {
        return Err(Error::storage(format!(
            "{} has WAL format version {version}; this build reads 1 to {VERSION}",
            path.display()
        )));
    }
    let mut segment = Segment::default();
    let mut offset = HEADER_LEN;
    // Rows of an append that has a note, read but not yet followed by it, and where the
    // first of them begins.
    let mut awaiting: Vec<WalRecord> = Vec::new();
    let mut awaiting_from = offset;
    let torn = loop {
        let mut prefix = [0_u8; 8];
        if offset + 8 > length || reader.read_exact(&mut prefix).is_err() {
            break offset != length;
        }
        let body_len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if !(10..=MAX_RECORD_BYTES).contains(&body_len) || offset + 8 + u64::from(body_len) > length
        {
            break true;
        }
        let mut body = vec![0_u8; body_len as usize];
        if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            break true;
        }
        let seq = u64::from_le_bytes([
            body[0], body[1], body[2], body[3], body[4], body[5], body[6], body[7],
        ]);
        let code = body[8];
        if version >= 2 && code == NOTE_CODE {
            segment.records.append(&mut awaiting);
            segment.notes.push((seq, body[9..].to_vec()));
            offset += 8 + u64::from(body_len);
            continue;
        }
        let noted = version >= 2 && code & NOTED_FLAG != 0;
        let Some(table) = table_of_code(code & !NOTED_FLAG) else {
            break true;
        };
        let batch = match decode_batch(&body[9..], version) {
            Ok(batch) => batch,
            Err(_) => break true,
        };
        let record = WalRecord { seq, table, batch };
        if noted {
            if awaiting.is_empty() {
                awaiting_from = offset;
            }
            awaiting.push(record);
        } else {
            segment.records.push(record);
        }
        offset += 8 + u64::from(body_len);
    };
    if !awaiting.is_empty() {
        // The append was cut before its note: it was never acknowledged, and its rows
        // without the note would be stored again when the client retries. Cut them off
        // like a torn record.
        return Ok((segment, awaiting_from, true));
    }
    Ok((segment, offset, torn))
}

/// Bytes before a record's body, and the sequence and table that begin the body.
const RECORD_PREFIX_LEN: usize = 17;

/// A record's length, CRC, sequence and table code (or [`NOTE_CODE`]); its IPC bytes (or
/// the note) follow.
fn record_prefix(seq: u64, code: u8, payload: &[u8]) -> [u8; RECORD_PREFIX_LEN] {
    let body_len = u32::try_from(9 + payload.len()).unwrap_or(u32::MAX);
    let seq_bytes = seq.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq_bytes);
    crc.update(&[code]);
    crc.update(payload);
    let mut prefix = [0_u8; RECORD_PREFIX_LEN];
    prefix[..4].copy_from_slice(&body_len.to_le_bytes());
    prefix[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    prefix[8..16].copy_from_slice(&seq_bytes);
    prefix[16] = code;
    prefix
}

/// Writes every slice whole, in order, however the kernel splits the writes.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    // IoSlice::advance_slices drops the slices written; empty ones are skipped up front.
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        // The kernel takes at most IOV_MAX (1024) slices per call.
        let batch = slices.len().min(1024);
        match file.write_vectored(&slices[..batch]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the WAL segment took no bytes",
                ));
            }
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    options: WalOptions,
    file: File,
    path: PathBuf,
    /// Offset past the last durable record of the current segment.
    durable_len: u64,
    max_seq: BTreeMap<TableKind, u64>,
    /// The highest sequence written to the current segment, notes included.
    last_seq: u64,
    next_seq: u64,
    shared: Arc<Shared>,
    sink: Arc<dyn DurableSink>,
    /// Set when a failed write could not be undone: every later write fails.
    broken: Option<String>,
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_name(first_seq));
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(|e| io_error("creating", &path, e))?;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&0_u32.to_le_bytes());
    header.extend_from_slice(&first_seq.to_le_bytes());
    file.write_all(&header)
        .map_err(|e| io_error("writing", &path, e))?;
    file.sync_all().map_err(|e| io_error("syncing", &path, e))?;
    sync_dir(dir)?;
    Ok((file, path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            let mut pending = first.bytes();
            let mut jobs = vec![first];
            // Group commit: everything that queued up meanwhile shares one fsync.
            while pending < (32 << 20) {
                match receiver.try_recv() {
                    Ok(job) => {
                        pending += job.bytes();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit(jobs);
        }
    }

    fn commit(&mut self, jobs: Vec<Job>) {
        if let Some(reason) = &self.broken {
            for job in jobs {
                let _gone = job
                    .reply
                    .send(Err(Error::storage(format!("WAL unusable: {reason}"))));
            }
            return;
        }
        // Each record is its 17-byte prefix (length, CRC, sequence, table) followed by the
        // caller's encoded rows, written as they are: no copy of them in user space. A
        // job's note follows its rows.
        let mut prefixes = Vec::new();
        let mut seqs = Vec::with_capacity(jobs.len());
        let mut seq = self.next_seq;
        let mut total = 0_usize;
        for job in &jobs {
            let mut job_seqs = Vec::with_capacity(job.records.len() + 1);
            let payloads = job
                .records
                .iter()
                .map(|(table, _, payload)| {
                    let flag = if job.note.is_some() { NOTED_FLAG } else { 0 };
                    (table_code(*table) | flag, payload)
                })
                .chain(job.note.iter().map(|note| (NOTE_CODE, note)));
            for (code, payload) in payloads {
                prefixes.push(record_prefix(seq, code, payload));
                total += RECORD_PREFIX_LEN + payload.len();
                job_seqs.push(seq);
                seq += 1;
            }
            seqs.push(job_seqs);
        }
        let payloads = jobs.iter().flat_map(|job| {
            job.records
                .iter()
                .map(|(_, _, payload)| payload)
                .chain(job.note.iter())
        });
        let mut slices = Vec::with_capacity(prefixes.len() * 2);
        for (prefix, payload) in prefixes.iter().zip(payloads) {
            slices.push(IoSlice::new(prefix));
            slices.push(IoSlice::new(payload));
        }
        let started = std::time::Instant::now();
        let result =
            write_all_vectored(&mut self.file, &mut slices).and_then(|()| self.file.sync_data());
        drop(slices);
        if result.is_ok() {
            crate::metrics::wal_sync(
                started.elapsed(),
                seqs.iter().map(Vec::len).sum(),
                total as u64,
            );
        }
        if let Err(error) = result {
            let message = format!("writing {}: {error}", self.path.display());
            // Cut the partial write off, so later records follow good ones.
            let undone = self
                .file
                .set_len(self.durable_len)
                .and_then(|()| {
                    self.file
                        .seek(SeekFrom::Start(self.durable_len))
                        .map(|_| ())
                })
                .and_then(|()| self.file.sync_all());
            if let Err(undo) = undone {
                self.broken = Some(format!("{message}; truncating failed too: {undo}"));
            }
            for job in jobs {
                let _gone = job.reply.send(Err(Error::storage(message.clone())));
            }
            return;
        }
        if seq > self.next_seq {
            self.last_seq = seq - 1;
        }
        self.next_seq = seq;
        self.durable_len += total as u64;
        self.shared.bytes.fetch_add(total as u64, Ordering::AcqRel);
        if let Ok(mut unapplied) = self.shared.unapplied_notes.lock() {
            for (job, job_seqs) in jobs.iter().zip(&seqs) {
                if job.note.is_some()
                    && let Some(seq) = job_seqs.last()
                {
                    unapplied.insert(*seq);
                }
            }
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for (job, job_seqs) in jobs.into_iter().zip(seqs) {
            for ((table, batch, _), seq) in job.records.into_iter().zip(&job_seqs) {
                let entry = self.max_seq.entry(table).or_insert(0);
                *entry = (*entry).max(*seq);
                self.sink.durable(WalRecord {
                    seq: *seq,
                    table,
                    batch,
                });
            }
            replies.push((job.reply, job_seqs));
        }
        if self.durable_len >= self.options.segment_bytes {
            self.rotate();
        }
        for (reply, job_seqs) in replies {
            let _gone = reply.send(Ok(job_seqs));
        }
    }

    fn rotate(&mut self) {
        match create_segment(&self.dir, self.next_seq) {
            Ok((file, path)) => {
                let closed = ClosedSegment {
                    path: std::mem::replace(&mut self.path, path),
                    bytes: self.durable_len,
                    max_seq: std::mem::take(&mut self.max_seq),
                    last_seq: std::mem::take(&mut self.last_seq),
                };
                self.file = file;
                self.durable_len = HEADER_LEN;
                self.shared.bytes.fetch_add(HEADER_LEN, Ordering::AcqRel);
                if let Ok(mut segments) = self.shared.closed.lock() {
                    segments.push(closed);
                }
            }
            Err(error) => {
                // Keep writing the current segment; try again after the next commit.
                tracing::warn!(%error, "cannot start a new WAL segment");
            }
        }
    }
}

/// The identity of the log in `dir`, made (and kept) on first use. Delta commits of its
/// rows carry it as their application id.
pub fn wal_id(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let id_path = dir.join("id");
    match std::fs::read_to_string(&id_path) {
        Ok(id) if !id.trim().is_empty() => Ok(format!("tarn-wal-{}", id.trim())),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            let temporary = dir.join("id.tmp");
            std::fs::write(&temporary, &id).map_err(|e| io_error("writing", &temporary, e))?;
            File::open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(|e| io_error("syncing", &temporary, e))?;
            std::fs::rename(&temporary, &id_path).map_err(|e| io_error("renaming", &id_path, e))?;
            sync_dir(dir)?;
            Ok(format!("tarn-wal-{id}"))
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, reads what it holds, and starts the
    /// writer. Records reach `sink` once durable, in sequence order.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        sink: Arc<dyn DurableSink>,
    ) -> Result<(Wal, Replay)> {
        let id = wal_id(dir)?;
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io_error("listing", dir, e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
            .collect();
        segments.sort();
        let mut replay = Replay::default();
        let mut closed = Vec::new();
        let mut total_bytes = 0;
        let mut next_seq = options.min_next_seq.max(1);
        let count = segments.len();
        for (index, path) in segments.into_iter().enumerate() {
            // A segment is named after the first sequence number it was opened for: even an
            // empty one says that number was handed out.
            if let Some(first) = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| stem.parse::<u64>().ok())
            {
                next_seq = next_seq.max(first.saturating_add(1));
            }
            let (segment, good_len, torn) = read_segment(&path)?;
            let is_last = index + 1 == count;
            if torn {
                if is_last {
                    let file_len = std::fs::metadata(&path)
                        .map(|m| m.len())
                        .unwrap_or(good_len);
                    replay.truncated_bytes += file_len.saturating_sub(good_len);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_error("opening", &path, e))?;
                    file.set_len(good_len)
                        .map_err(|e| io_error("truncating", &path, e))?;
                    file.sync_all().map_err(|e| io_error("syncing", &path, e))?;
                } else {
                    tracing::error!(segment = %path.display(), "WAL segment is corrupt past offset {good_len}");
                }
            }
            let mut max_seq = BTreeMap::new();
            let mut last_seq = 0;
            for record in &segment.records {
                let entry = max_seq.entry(record.table).or_insert(0);
                *entry = record.seq.max(*entry);
                last_seq = last_seq.max(record.seq);
            }
            for (seq, _) in &segment.notes {
                last_seq = last_seq.max(*seq);
            }
            if last_seq > 0 {
                next_seq = next_seq.max(last_seq + 1);
            }
            total_bytes += good_len;
            closed.push(ClosedSegment {
                path,
                bytes: good_len,
                max_seq,
                last_seq,
            });
            replay.records.extend(segment.records);
            replay.notes.extend(segment.notes);
        }
        // Every segment found is closed; new records go to a new one.
        let (file, path) = create_segment(dir, next_seq)?;
        total_bytes += HEADER_LEN;
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(total_bytes),
            closed: std::sync::Mutex::new(closed),
            unapplied_notes: std::sync::Mutex::new(
                replay.notes.iter().map(|(seq, _)| *seq).collect(),
            ),
        });
        let writer = Writer {
            dir: dir.to_owned(),
            options,
            file,
            path,
            durable_len: HEADER_LEN,
            max_seq: BTreeMap::new(),
            last_seq: 0,
            next_seq,
            shared: Arc::clone(&shared),
            sink,
            broken: None,
        };
        let (sender, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tarn-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::storage(format!("starting the WAL writer: {e}")))?;
        Ok((
            Wal {
                dir: dir.to_owned(),
                id,
                sender: std::sync::Mutex::new(Some(sender)),
                writer: std::sync::Mutex::new(Some(handle)),
                shared,
            },
            replay,
        ))
    }

    /// The log's identity: the Delta application id its commits carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all segments on disk.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Appends rows (already IPC-encoded by the caller, so encoding runs in parallel);
    /// returns their sequence numbers once they are durable and in the sink.
    pub async fn append(
        &self,
        records: Vec<(TableKind, RecordBatch, Vec<u8>)>,
    ) -> Result<Vec<u64>> {
        Ok(self.append_noted(records, None).await?.0)
    }

    /// Appends rows and, after them in the same write, a note; returns the rows' sequence
    /// numbers and the note's once all of them are durable and the rows are in the sink.
    pub async fn append_noted(
        &self,
        records: Vec<(TableKind, RecordBatch, Vec<u8>)>,
        note: Option<Vec<u8>>,
    ) -> Result<(Vec<u64>, Option<u64>)> {
        let noted = note.is_some();
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let sender = self
                .sender
                .lock()
                .map_err(|_| Error::storage("WAL sender poisoned"))?;
            let sender = sender
                .as_ref()
                .ok_or_else(|| Error::storage("WAL is closed"))?;
            sender
                .send(Job {
                    records,
                    note,
                    reply,
                })
                .map_err(|_| Error::storage("WAL writer stopped"))?;
        }
        let mut seqs = answer
            .await
            .map_err(|_| Error::storage("WAL writer stopped"))??;
        let note_seq = if noted { seqs.pop() } else { None };
        Ok((seqs, note_seq))
    }

    /// Says that the note with sequence `seq` is applied: the log no longer keeps its
    /// segment for it.
    pub fn note_applied(&self, seq: u64) {
        if let Ok(mut unapplied) = self.shared.unapplied_notes.lock() {
            unapplied.remove(&seq);
        }
    }

    /// Deletes closed segments whose every record is committed: `committed[t]` is the
    /// highest sequence table `t` has committed to Delta. The segment of the oldest note
    /// not yet applied, and every later one, is kept.
    pub fn release(&self, committed: &BTreeMap<TableKind, u64>) -> Result<usize> {
        let keep_from = self
            .shared
            .unapplied_notes
            .lock()
            .map_err(|_| Error::storage("WAL note list poisoned"))?
            .first()
            .copied();
        let mut released = 0;
        let mut segments = self
            .shared
            .closed
            .lock()
            .map_err(|_| Error::storage("WAL segment list poisoned"))?;
        let mut keep = Vec::with_capacity(segments.len());
        for segment in segments.drain(..) {
            let done = segment
                .max_seq
                .iter()
                .all(|(table, max)| committed.get(table).is_some_and(|c| c >= max))
                && keep_from.is_none_or(|keep| segment.last_seq < keep);
            if done {
                std::fs::remove_file(&segment.path)
                    .map_err(|e| io_error("removing", &segment.path, e))?;
                self.shared.bytes.fetch_sub(segment.bytes, Ordering::AcqRel);
                released += 1;
            } else {
                keep.push(segment);
            }
        }
        *segments = keep;
        if released > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(released)
    }

    /// Stops the writer after it has written everything sent so far.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Ok(mut writer) = self.writer.lock()
            && let Some(handle) = writer.take()
        {
            let _joined = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<WalRecord>>);

    impl DurableSink for Collect {
        fn durable(&self, record: WalRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    /// Opens the log in `dir` with default options and a sink nobody reads.
    fn open_default(dir: &Path) -> (Wal, Replay) {
        Wal::open(dir, WalOptions::default(), Arc::new(Collect::default())).unwrap()
    }

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![n, n + 1])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap()
    }

    fn records(values: &[i64]) -> Vec<(TableKind, RecordBatch, Vec<u8>)> {
        values
            .iter()
            .map(|n| {
                let batch = batch(*n);
                let bytes = encode_batch(&batch).unwrap();
                (TableKind::Spans, batch, bytes)
            })
            .collect()
    }

    #[tokio::test]
    async fn records_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Collect::default());
        let (wal, replay) = Wal::open(dir.path(), WalOptions::default(), sink.clone()).unwrap();
        assert!(replay.records.is_empty());
        let id = wal.id().to_owned();
        assert_eq!(wal.append(records(&[1, 2])).await.unwrap(), vec![1, 2]);
        assert_eq!(wal.append(records(&[3])).await.unwrap(), vec![3]);
        assert_eq!(sink.0.lock().unwrap().len(), 3);
        drop(wal);
        let (wal, replay) = open_default(dir.path());
        assert_eq!(wal.id(), id);
        let seqs: Vec<u64> = replay.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(replay.records[2].batch, batch(3));
        // Numbering continues after the replayed records.
        assert_eq!(wal.append(records(&[4])).await.unwrap(), vec![4]);
    }

    #[tokio::test]
    async fn a_group_larger_than_one_vectored_write_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_default(dir.path());
        // 700 records are 1,400 slices: more than the 1,024 one writev takes.
        let values: Vec<i64> = (0..700).map(|n| n * 10).collect();
        let seqs = wal.append(records(&values)).await.unwrap();
        assert_eq!(seqs, (1..=700).collect::<Vec<u64>>());
        drop(wal);
        let (_, replay) = open_default(dir.path());
        assert_eq!(replay.truncated_bytes, 0);
        assert_eq!(replay.records.len(), 700);
        for (record, n) in replay.records.iter().zip(&values) {
            assert_eq!(record.batch, batch(*n));
        }
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_default(dir.path());
        wal.append(records(&[1, 2])).await.unwrap();
        drop(wal);
        let mut segments: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        segments.sort();
        let with_records = segments
            .iter()
            .find(|p| std::fs::metadata(p).unwrap().len() > HEADER_LEN)
            .unwrap()
            .clone();
        // A crash in the middle of a write leaves half a record.
        let mut file = OpenOptions::new().append(true).open(&with_records).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(file);
        // Remove the empty segment opened after the records, so the torn one is last.
        for segment in &segments {
            if *segment != with_records {
                std::fs::remove_file(segment).unwrap();
            }
        }
        let (_, replay) = open_default(dir.path());
        assert_eq!(replay.records.len(), 2);
        assert_eq!(replay.truncated_bytes, 9);
    }

    #[tokio::test]
    async fn committed_segments_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions {
            segment_bytes: 1,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(dir.path(), options, Arc::new(Collect::default())).unwrap();
        wal.append(records(&[1])).await.unwrap();
        wal.append(records(&[2])).await.unwrap();
        let before = wal.bytes();
        let mut committed = BTreeMap::new();
        committed.insert(TableKind::Spans, 1);
        assert_eq!(wal.release(&committed).unwrap(), 1);
        assert!(wal.bytes() < before);
        committed.insert(TableKind::Spans, 2);
        assert_eq!(wal.release(&committed).unwrap(), 1);
    }

    #[tokio::test]
    async fn numbering_never_goes_back_after_everything_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let open = |min_next_seq| {
            Wal::open(
                dir.path(),
                WalOptions {
                    min_next_seq,
                    ..WalOptions::default()
                },
                Arc::new(Collect::default()),
            )
            .unwrap()
            .0
        };
        let wal = open(1);
        assert_eq!(wal.append(records(&[1, 2])).await.unwrap(), vec![1, 2]);
        drop(wal);
        // Restarted; the old segment is committed and released, nothing new is written.
        let wal = open(1);
        let committed = BTreeMap::from([(TableKind::Spans, 2)]);
        assert_eq!(wal.release(&committed).unwrap(), 1);
        drop(wal);
        // Two more restarts without writes leave only empty segments behind.
        drop(open(1));
        let wal = open(1);
        let next = wal.append(records(&[3])).await.unwrap();
        assert!(next[0] > 2, "sequence {next:?} reused a committed number");
        drop(wal);
        // The committed sequence the tables report is a floor even with no segment left.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "wal") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let wal = open(100);
        assert_eq!(wal.append(records(&[4])).await.unwrap(), vec![100]);
    }

    #[tokio::test]
    async fn notes_follow_their_rows_and_come_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_default(dir.path());
        let (seqs, note) = wal
            .append_noted(records(&[1, 2]), Some(b"block a".to_vec()))
            .await
            .unwrap();
        assert_eq!((seqs, note), (vec![1, 2], Some(3)));
        // A note without rows (a block that made none) is durable too.
        let (seqs, note) = wal
            .append_noted(Vec::new(), Some(b"block b".to_vec()))
            .await
            .unwrap();
        assert_eq!((seqs, note), (vec![], Some(4)));
        assert_eq!(wal.append(records(&[3])).await.unwrap(), vec![5]);
        drop(wal);
        let (wal, replay) = open_default(dir.path());
        let seqs: Vec<u64> = replay.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 5]);
        assert_eq!(
            replay.notes,
            vec![(3, b"block a".to_vec()), (4, b"block b".to_vec())]
        );
        assert_eq!(wal.append(records(&[4])).await.unwrap(), vec![6]);
    }

    #[tokio::test]
    async fn rows_whose_note_was_cut_off_by_a_crash_are_cut_off_too() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open_default(dir.path());
        wal.append(records(&[1])).await.unwrap();
        let note = b"the block's note".to_vec();
        wal.append_noted(records(&[2, 3]), Some(note.clone()))
            .await
            .unwrap();
        drop(wal);
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "wal")
                    && std::fs::metadata(p).unwrap().len() > HEADER_LEN
            })
            .unwrap();
        // Intact, both appends come back.
        let (whole, _, torn) = read_segment(&segment).unwrap();
        assert!(!torn);
        assert_eq!(whole.records.len(), 3);
        // Killed after the rows reached the file but before the note did.
        let length = std::fs::metadata(&segment).unwrap().len();
        let note_record = (RECORD_PREFIX_LEN + note.len()) as u64;
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(length - note_record).unwrap();
        drop(file);
        let (cut, good_len, torn) = read_segment(&segment).unwrap();
        assert!(torn);
        assert!(cut.notes.is_empty());
        let seqs: Vec<u64> = cut.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1], "rows without their note must not be replayed");
        assert!(good_len < length - note_record);
    }

    #[tokio::test]
    async fn a_segment_with_a_note_not_yet_applied_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions {
            segment_bytes: 1,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(dir.path(), options, Arc::new(Collect::default())).unwrap();
        let (_, note) = wal
            .append_noted(records(&[1]), Some(b"n".to_vec()))
            .await
            .unwrap();
        assert_eq!(note, Some(2));
        wal.append(records(&[2])).await.unwrap();
        let committed = BTreeMap::from([(TableKind::Spans, 3)]);
        // Every row is committed, but the first segment's note is not applied yet: it and
        // the segments after it stay, across a restart too.
        assert_eq!(wal.release(&committed).unwrap(), 0);
        drop(wal);
        let (wal, replay) = open_default(dir.path());
        assert_eq!(replay.notes, vec![(2, b"n".to_vec())]);
        // Only the empty segment left by the last rotation may go.
        assert!(wal.release(&committed).unwrap() <= 1);
        drop(wal);
        let (wal, replay) = open_default(dir.path());
        assert_eq!(replay.notes, vec![(2, b"n".to_vec())]);
        assert_eq!(replay.records.len(), 2);
        wal.note_applied(2);
        assert!(wal.release(&committed).unwrap() >= 2);
        drop(wal);
        let (_, replay) = open_default(dir.path());
        assert!(replay.notes.is_empty());
        assert!(replay.records.is_empty());
    }

    /// Rows as versions 1 and 2 stored them: one IPC stream of the whole batch.
    fn plain_ipc(batch: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        write_ipc(&mut out, batch).unwrap();
        out
    }

    /// 1,000 rows: an identity-like string, a time and an all-null column that never
    /// change, a counter and a message that do.
    fn identity_batch() -> RecordBatch {
        use arrow::array::TimestampMicrosecondArray;
        let rows = 1_000;
        let schema = Arc::new(
            Schema::new(vec![
                Field::new("n", DataType::Int64, false),
                Field::new("process_id", DataType::Utf8, false),
                Field::new(
                    "insert_time",
                    DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        Some("UTC".into()),
                    ),
                    false,
                ),
                Field::new("service_version", DataType::Utf8, true),
                Field::new("message", DataType::Utf8, true),
            ])
            .with_metadata([("table".to_owned(), "test".to_owned())].into()),
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| "0b0e5a4e-7d1c-4a83-9a9e-2f6b1f0c9d11"),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_790_000_000_000_000; 1_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![None::<&str>; 1_000])),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("message {i}")),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn constant_columns_are_stored_once_and_read_back_whole() {
        let batch = identity_batch();
        let encoded = encode_batch(&batch).unwrap();
        assert_eq!(decode_batch(&encoded, VERSION).unwrap(), batch);
        // The identity string, the time and the nulls are stored once, not 1,000 times.
        let plain = plain_ipc(&batch).len();
        let without = plain_ipc(&batch.project(&[0, 4]).unwrap()).len();
        assert!(
            encoded.len() < without + 2_000,
            "{} bytes encoded, {without} for the varying columns alone, {plain} plain",
            encoded.len()
        );
        // A slice (a fresh batch split at a date boundary) keeps its own rows.
        let slice = batch.slice(10, 500);
        assert_eq!(
            decode_batch(&encode_batch(&slice).unwrap(), VERSION).unwrap(),
            slice
        );
        // Every column constant: one stays whole to carry the row count.
        let constant = batch.project(&[1, 2, 3]).unwrap();
        assert_eq!(
            decode_batch(&encode_batch(&constant).unwrap(), VERSION).unwrap(),
            constant
        );
        // No constant column at all; a single row.
        for batch in [batch.project(&[0, 4]).unwrap(), batch.slice(3, 1)] {
            assert_eq!(
                decode_batch(&encode_batch(&batch).unwrap(), VERSION).unwrap(),
                batch
            );
        }
    }

    #[test]
    fn only_equal_rows_make_a_constant_column() {
        let strings = |values: &[Option<&str>]| StringArray::from(values.to_vec());
        assert!(is_constant(&strings(&[Some("ab"), Some("ab"), Some("ab")])));
        assert!(is_constant(&strings(&[Some(""), Some("")])));
        assert!(is_constant(&strings(&[None, None])));
        assert!(!is_constant(&strings(&[Some("ab"), Some("ac")])));
        assert!(!is_constant(&strings(&[Some("ab"), Some("abab")])));
        assert!(!is_constant(&strings(&[
            Some("abab"),
            Some("ab"),
            Some("ab")
        ])));
        assert!(!is_constant(&strings(&[Some("ab"), None])));
        assert!(
            !is_constant(&strings(&[Some("ab")])),
            "one row: nothing to save"
        );
        assert!(!is_constant(&strings(&[Some("a"), Some("a"), Some("b")])));
        let sliced = strings(&[Some("x"), Some("a"), Some("a")]).slice(1, 2);
        assert!(is_constant(&sliced));
        assert!(is_constant(&Int64Array::from(vec![7, 7, 7])));
        assert!(!is_constant(&Int64Array::from(vec![7, 7, 8])));
        assert!(is_constant(&Int64Array::from(vec![8, 7, 7]).slice(1, 2)));
        let floats = arrow::array::Float64Array::from(vec![0.0, -0.0]);
        assert!(!is_constant(&floats), "equal as numbers, not as bits");
        // Nested columns stay whole, even when every row is null.
        let list = DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)));
        assert!(!is_constant(&arrow::array::new_null_array(&list, 3)));
    }

    #[test]
    fn malformed_rows_are_an_error_not_a_panic() {
        let encoded = encode_batch(&identity_batch()).unwrap();
        for cut in [0, 3, 5, 9, 20, encoded.len() / 2, encoded.len() - 100] {
            assert!(
                decode_batch(&encoded[..cut], VERSION).is_err(),
                "cut at {cut}"
            );
        }
        // Column indices out of order or out of range.
        let mut bad = encoded.clone();
        bad[6..8].copy_from_slice(&40_u16.to_le_bytes());
        assert!(decode_batch(&bad, VERSION).is_err());
    }

    #[test]
    fn corrupted_rows_decode_or_fail_without_a_panic() {
        // A stable stand-in for the `wal_rows` fuzz target: every byte of a record's rows
        // changed in turn (the CRC would catch this on disk; the decoder must hold anyway).
        let encoded = encode_batch(&identity_batch().slice(0, 20)).unwrap();
        let mut decoded = 0;
        for at in 0..encoded.len() {
            for value in [0_u8, 1, 0x7f, 0xff] {
                let mut bytes = encoded.clone();
                bytes[at] = value;
                let outcome = std::panic::catch_unwind(|| decode_batch(&bytes, VERSION).is_ok());
                let ok = outcome.unwrap_or_else(|_| panic!("panic with byte {at} set to {value}"));
                decoded += usize::from(ok);
            }
        }
        assert!(decoded > 0, "some changes (padding, values) still decode");
    }

    /// Writes a segment of format `version` holding one record of `batch(7)`, rows as
    /// versions 1 and 2 stored them, and checks it is read back whole.
    fn assert_old_segment_is_read(version: u32) {
        let dir = tempfile::tempdir().unwrap();
        let payload = plain_ipc(&batch(7));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&0_u32.to_le_bytes());
        bytes.extend_from_slice(&1_u64.to_le_bytes());
        bytes.extend_from_slice(&record_prefix(1, table_code(TableKind::Spans), &payload));
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join(segment_name(1)), &bytes).unwrap();
        let (_, replay) = open_default(dir.path());
        assert_eq!(replay.truncated_bytes, 0);
        assert_eq!(replay.records.len(), 1);
        assert_eq!(replay.records[0].batch, batch(7));
    }

    #[test]
    fn version_2_segments_are_still_read() {
        assert_old_segment_is_read(2);
    }

    #[test]
    fn version_1_segments_are_still_read() {
        assert_old_segment_is_read(1);
    }

    #[test]
    fn garbage_is_not_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("00000000000000000001.wal"),
            b"not a wal at all",
        )
        .unwrap();
        let error = Wal::open(
            dir.path(),
            WalOptions::default(),
            Arc::new(Collect::default()),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("not a Tarn WAL segment"),
            "{error}"
        );
    }
}
