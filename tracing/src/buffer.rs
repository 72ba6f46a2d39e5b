//! Per-thread event buffers: the hot path.
//!
//! Every thread owns, for each kind of stream (log, metrics, thread/spans), a *chunk*: a
//! heap block of memory it appends raw event records to. A record is a few 8-byte words
//! (a code, the address of the static descriptor, the tick count, the values), plus the
//! bytes of a formatted message for the kinds that have one. Writing one is a thread-local
//! load, a bounds check, a few stores and a release store of the new end (`committed`), which
//! lets the sink read what was written while the thread keeps writing: no lock, no atomic
//! read-modify-write, no shared cache line written.
//!
//! A full chunk is pushed on a lock-free list (one compare-and-swap) that the sink thread
//! empties, and the thread continues in a spare chunk the sink handed back, or a new one.
//! When the memory held by queued chunks and unsent requests is over the budget, the thread
//! keeps its full chunk and drops (and counts) its new events instead: it never waits.
//!
//! The sink thread (see [`crate::sink`]) turns the records into transit blocks with
//! `tarn-proto`'s writers, off the application's threads.
//!
//! Memory ordering: the owner thread writes records past `committed` and then publishes
//! them with a release store; the sink reads `committed` with an acquire load and only reads
//! bytes before it. Chunks are freed or recycled by the sink thread only, after it received
//! them through the list; the owner never frees a chunk it published.

use crate::time::DualTime;
use std::alloc::Layout;
use std::cell::Cell;
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Stream kinds, as indexes.
pub(crate) const LOG: usize = 0;
pub(crate) const METRICS: usize = 1;
pub(crate) const THREAD: usize = 2;
pub(crate) const KINDS: usize = 3;

/// Record codes (low byte of a record's first word).
pub(crate) mod code {
    // log stream
    pub const LOG_STATIC: u64 = 1; // desc, time
    pub const LOG_FMT: u64 = 2; // desc, time, len, bytes
    pub const LOG_TAGGED_STATIC: u64 = 3; // desc, time, props
    pub const LOG_TAGGED_FMT: u64 = 4; // desc, time, props, len, bytes
    pub const LOG_INTEROP: u64 = 5; // (level << 8), time, len (target << 32 | msg), target bytes, msg bytes
    // metrics stream
    pub const INT_METRIC: u64 = 1; // desc, time, value
    pub const FLOAT_METRIC: u64 = 2; // desc, time, bits
    pub const TAGGED_INT_METRIC: u64 = 3; // desc, time, value, props
    pub const TAGGED_FLOAT_METRIC: u64 = 4; // desc, time, bits, props
    // thread stream
    pub const BEGIN_SPAN: u64 = 1; // desc, time
    pub const END_SPAN: u64 = 2; // desc, time
    pub const BEGIN_NAMED: u64 = 3; // location, time, len, name bytes
    pub const END_NAMED: u64 = 4; // location, time, len, name bytes
    pub const BEGIN_NAMED_STATIC: u64 = 5; // location, time, name ptr, name len
    pub const END_NAMED_STATIC: u64 = 6; // location, time, name ptr, name len
    pub const BEGIN_ASYNC: u64 = 7; // desc, time, span id, parent, depth
    pub const END_ASYNC: u64 = 8; // desc, time, span id, parent, depth
    pub const BEGIN_ASYNC_NAMED: u64 = 9; // location, time, span id, parent, depth, name ptr, name len
    pub const END_ASYNC_NAMED: u64 = 10; // location, time, span id, parent, depth, name ptr, name len
    #[cfg(feature = "tracing-bridge")]
    pub const BEGIN_TRACING: u64 = 11; // tracing metadata, time, span id, parent, depth
    #[cfg(feature = "tracing-bridge")]
    pub const END_TRACING: u64 = 12; // tracing metadata, time, span id, parent, depth
}

/// Largest record: longer messages are cut.
pub(crate) const MAX_RECORD: usize = 1 << 20;

/// Header of a chunk; the data follows, 64-byte aligned.
#[repr(C, align(64))]
pub(crate) struct Chunk {
    /// Link of the sink's queue and of the spare lists.
    pub next: AtomicPtr<Chunk>,
    /// The thread that writes it.
    pub owner: *const ThreadEntry,
    /// Stream kind index.
    pub kind: usize,
    /// Position in the owner's sequence of chunks of this kind.
    pub seq: u64,
    /// Data capacity in bytes.
    pub cap: usize,
    /// Address of the end of the committed records (owner: release store).
    pub committed: AtomicUsize,
    /// Offset up to which the sink has read (sink only).
    pub consumed: AtomicUsize,
}

const HEADER: usize = size_of::<Chunk>();

impl Chunk {
    fn layout(cap: usize) -> Option<Layout> {
        Layout::from_size_align(HEADER.checked_add(cap)?, 64).ok()
    }

    /// A new chunk, or `None` when the allocator refuses.
    fn alloc(cap: usize) -> Option<*mut Chunk> {
        let layout = Self::layout(cap)?;
        // SAFETY: the layout has a non-zero size (HEADER > 0).
        let p = unsafe { std::alloc::alloc(layout) }.cast::<Chunk>();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a fresh allocation, aligned and large enough for the header.
        unsafe {
            ptr::write(
                p,
                Chunk {
                    next: AtomicPtr::new(ptr::null_mut()),
                    owner: ptr::null(),
                    kind: 0,
                    seq: 0,
                    cap,
                    committed: AtomicUsize::new(0),
                    consumed: AtomicUsize::new(0),
                },
            );
        }
        Some(p)
    }

    /// Frees a chunk.
    ///
    /// # Safety
    /// `p` comes from [`Chunk::alloc`], nobody uses it any more.
    pub unsafe fn free(p: *mut Chunk) {
        // SAFETY: per the contract, `p` is a live chunk whose `cap` gave its layout.
        unsafe {
            let cap = (*p).cap;
            if let Some(layout) = Self::layout(cap) {
                std::alloc::dealloc(p.cast::<u8>(), layout);
            }
        }
    }

    /// Start of the data.
    pub fn data(p: *mut Chunk) -> *mut u8 {
        p.cast::<u8>().wrapping_add(HEADER)
    }

    /// The committed records not read yet, as (offset, bytes).
    ///
    /// # Safety
    /// `p` is a live chunk and the caller is the sink thread (the only reader).
    pub unsafe fn unread<'a>(p: *mut Chunk) -> &'a [u8] {
        // SAFETY: the caller guarantees `p` is live; the acquire load orders the reads of the
        // bytes before `committed` after the owner's writes of them; the owner never writes
        // those bytes again.
        unsafe {
            let start = Self::data(p);
            let committed = (*p).committed.load(Ordering::Acquire);
            let consumed = (*p).consumed.load(Ordering::Relaxed);
            let end = committed.saturating_sub(start as usize);
            if end <= consumed {
                return &[];
            }
            std::slice::from_raw_parts(start.add(consumed), end - consumed)
        }
    }
}

/// What the sink knows of a thread, shared with the thread.
pub(crate) struct ThreadEntry {
    /// Process-wide thread number (from 1).
    pub index: u64,
    /// Thread name.
    pub name: String,
    /// When the thread registered.
    pub created: DualTime,
    /// The chunk being written, per kind (null when none).
    pub current: [AtomicPtr<Chunk>; KINDS],
    /// Chunks the sink hands back (a list the owner takes whole).
    pub spare: AtomicPtr<Chunk>,
    /// About how many chunks are on `spare` (the sink adds, the owner clears).
    pub spare_len: AtomicUsize,
    /// Events dropped by the owner, per kind (owner writes, sink reads).
    pub dropped: [AtomicU64; KINDS],
    /// Set by the owner when it exits, after its last chunks are queued.
    pub exited: AtomicBool,
}

// SAFETY: the raw pointers inside are only dereferenced under the protocol described in the
// module documentation; the entry itself is shared through `Arc`.
unsafe impl Send for ThreadEntry {}
// SAFETY: as above.
unsafe impl Sync for ThreadEntry {}

/// State shared by the threads and the sink.
pub(crate) struct Shared {
    /// Full chunks, newest first (a Treiber stack the sink swaps out whole).
    queue: AtomicPtr<Chunk>,
    /// Bytes held by queued chunks and unsent requests.
    pub queued_bytes: AtomicUsize,
    /// Over this, span events are dropped.
    pub soft_limit: usize,
    /// Over this, every event is dropped.
    pub hard_limit: usize,
    /// Capacity of a standard chunk.
    pub chunk_bytes: usize,
    /// The sink is woken when this many bytes of chunks are queued (otherwise it looks at
    /// the queue on its own, every few milliseconds while there is traffic): waking a
    /// sleeping thread is a system call, too dear to pay for every chunk.
    pub wake_bytes: usize,
    /// Most spare chunks kept per thread (8 MiB worth): a thread that emits in a tight loop
    /// fills a chunk in tens of microseconds, faster than a busy machine schedules the sink;
    /// recycled chunks spare it the allocator and the page faults. The sink takes them back
    /// from threads that stay idle for a flush period.
    pub max_spares: usize,
    /// Cleared at shutdown: threads stop registering and handing off.
    pub accepting: AtomicBool,
    /// The sink thread, to wake it.
    pub sink_thread: OnceLock<std::thread::Thread>,
    /// Threads registered since the sink last looked.
    pub registrations: Mutex<Vec<Arc<ThreadEntry>>>,
    next_thread: AtomicU64,
    /// Span ids are handed out to threads in ranges.
    next_span_range: AtomicU64,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

pub(crate) fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

/// Installs the shared state; false when it already exists (one telemetry per process).
pub(crate) fn install(chunk_bytes: usize, max_queue_bytes: usize) -> bool {
    let mut fresh = false;
    SHARED.get_or_init(|| {
        fresh = true;
        Shared::new(chunk_bytes, max_queue_bytes)
    });
    fresh
}

impl Shared {
    pub(crate) fn new(chunk_bytes: usize, max_queue_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.clamp(4096, MAX_RECORD * 4) & !63;
        Shared {
            queue: AtomicPtr::new(ptr::null_mut()),
            queued_bytes: AtomicUsize::new(0),
            soft_limit: max_queue_bytes / 4 * 3,
            hard_limit: max_queue_bytes,
            chunk_bytes,
            wake_bytes: (max_queue_bytes / 8).min(1 << 20).max(chunk_bytes),
            max_spares: ((8 << 20) / chunk_bytes).max(4),
            accepting: AtomicBool::new(true),
            sink_thread: OnceLock::new(),
            registrations: Mutex::new(Vec::new()),
            next_thread: AtomicU64::new(1),
            next_span_range: AtomicU64::new(1),
        }
    }

    /// Counts `bytes` more as queued if that keeps the total within `limit`; returns the
    /// total before. One compare-and-swap loop, so that threads handing chunks over and the
    /// sink queueing requests can never push the total past the limit between a check and
    /// an add.
    pub fn reserve(&self, bytes: usize, limit: usize) -> Option<usize> {
        self.queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                queued.checked_add(bytes).filter(|total| *total <= limit)
            })
            .ok()
    }

    fn push(&self, chunk: *mut Chunk) {
        let mut head = self.queue.load(Ordering::Relaxed);
        loop {
            // SAFETY: `chunk` is a live chunk owned by the caller until the exchange succeeds.
            unsafe { (*chunk).next.store(head, Ordering::Relaxed) };
            match self.queue.compare_exchange_weak(
                head,
                chunk,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every queued chunk, oldest first.
    pub fn take_queue(&self) -> Vec<*mut Chunk> {
        let mut p = self.queue.swap(ptr::null_mut(), Ordering::Acquire);
        let mut out = Vec::new();
        while !p.is_null() {
            out.push(p);
            // SAFETY: chunks on the list are live and now owned by the sink.
            p = unsafe { (*p).next.load(Ordering::Relaxed) };
        }
        out.reverse();
        out
    }

    pub fn wake_sink(&self) {
        if let Some(t) = self.sink_thread.get() {
            t.unpark();
        }
    }

    /// Hands `chunk` back to its owner as a spare (up to `max_spares`); otherwise frees it.
    ///
    /// # Safety
    /// Called by the sink with a chunk it received from the queue and finished reading.
    pub unsafe fn recycle(&self, chunk: *mut Chunk, entry: Option<&ThreadEntry>) {
        // SAFETY: per the contract the sink owns `chunk` until it is on the spare list.
        unsafe {
            if let Some(entry) = entry
                && (*chunk).cap == self.chunk_bytes
                && !entry.exited.load(Ordering::Acquire)
                && entry.spare_len.load(Ordering::Relaxed) < self.max_spares
            {
                // The owner only ever takes the whole list: no ABA.
                let mut head = entry.spare.load(Ordering::Relaxed);
                loop {
                    (*chunk).next.store(head, Ordering::Relaxed);
                    match entry.spare.compare_exchange_weak(
                        head,
                        chunk,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(h) => head = h,
                    }
                }
                entry.spare_len.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Chunk::free(chunk);
        }
    }
}

struct Cursor {
    pos: Cell<*mut u8>,
    end: Cell<*mut u8>,
    chunk: Cell<*mut Chunk>,
    seq: Cell<u64>,
    /// A message is being formatted into this chunk: nested events of the same kind (from
    /// a `Display` implementation) are dropped instead of overwriting it.
    busy: Cell<bool>,
}

impl Cursor {
    const fn new() -> Self {
        Self {
            pos: Cell::new(ptr::null_mut()),
            end: Cell::new(ptr::null_mut()),
            chunk: Cell::new(ptr::null_mut()),
            seq: Cell::new(0),
            busy: Cell::new(false),
        }
    }

    #[inline(always)]
    fn room(&self) -> usize {
        (self.end.get() as usize).wrapping_sub(self.pos.get() as usize)
    }
}

const NEW: u8 = 0;
const REGISTERED: u8 = 1;
const GONE: u8 = 2;

/// Span ids reserved per refill of a thread's range.
const SPAN_RANGE: u64 = 1 << 12;

/// The thread-local state. `const`-initialized and without `Drop`, so reaching it is a plain
/// thread-pointer-relative access.
pub(crate) struct Local {
    cursors: [Cursor; KINDS],
    entry: Cell<*const ThreadEntry>,
    state: Cell<u8>,
    /// Spare chunks taken from the entry (owner only).
    spares: Cell<*mut Chunk>,
    next_span: Cell<u64>,
    span_limit: Cell<u64>,
    /// The async span being polled on this thread: id and depth (0, 0 when none).
    pub async_span: Cell<u64>,
    pub async_depth: Cell<u32>,
}

impl Local {
    const fn new() -> Self {
        Self {
            cursors: [Cursor::new(), Cursor::new(), Cursor::new()],
            entry: Cell::new(ptr::null()),
            state: Cell::new(NEW),
            spares: Cell::new(ptr::null_mut()),
            next_span: Cell::new(0),
            span_limit: Cell::new(0),
            async_span: Cell::new(0),
            async_depth: Cell::new(0),
        }
    }
}

thread_local! {
    pub(crate) static LOCAL: Local = const { Local::new() };
    static EXIT: ExitGuard = const { ExitGuard };
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        LOCAL.with(on_thread_exit);
    }
}

fn on_thread_exit(l: &Local) {
    if l.state.get() != REGISTERED {
        l.state.set(GONE);
        return;
    }
    l.state.set(GONE);
    let entry_ptr = l.entry.get();
    // SAFETY: set at registration from `Arc::into_raw`; this thread's reference is released
    // below, after the last use.
    let entry = unsafe { &*entry_ptr };
    if let Some(shared) = shared() {
        for (kind, cursor) in l.cursors.iter().enumerate() {
            let chunk = cursor.chunk.replace(ptr::null_mut());
            cursor.pos.set(ptr::null_mut());
            cursor.end.set(ptr::null_mut());
            if !chunk.is_null() {
                // SAFETY: the chunk is live (the sink frees published chunks only after
                // receiving them from the queue).
                let cap = unsafe { (*chunk).cap };
                shared.queued_bytes.fetch_add(cap, Ordering::Relaxed);
                entry.current[kind].store(ptr::null_mut(), Ordering::Release);
                shared.push(chunk);
            }
        }
        entry.exited.store(true, Ordering::Release);
        shared.wake_sink();
    }
    let mut spare = l.spares.replace(ptr::null_mut());
    while !spare.is_null() {
        // SAFETY: spares taken by this thread are owned by it and unpublished.
        unsafe {
            let next = (*spare).next.load(Ordering::Relaxed);
            Chunk::free(spare);
            spare = next;
        }
    }
    // SAFETY: the pointer came from `Arc::into_raw` at registration and is released once.
    drop(unsafe { Arc::from_raw(entry_ptr) });
    l.entry.set(ptr::null());
}

fn register(l: &Local) -> bool {
    let Some(shared) = shared() else {
        return false;
    };
    if !shared.accepting.load(Ordering::Relaxed) {
        return false;
    }
    if EXIT.try_with(|_| ()).is_err() {
        // The thread is exiting: its destructors already ran.
        l.state.set(GONE);
        return false;
    }
    let index = shared.next_thread.fetch_add(1, Ordering::Relaxed);
    let current = std::thread::current();
    let name = current
        .name()
        .map_or_else(|| format!("thread-{index}"), str::to_owned);
    let entry = Arc::new(ThreadEntry {
        index,
        name,
        created: DualTime::now(),
        current: Default::default(),
        spare: AtomicPtr::new(ptr::null_mut()),
        spare_len: AtomicUsize::new(0),
        dropped: Default::default(),
        exited: AtomicBool::new(false),
    });
    shared
        .registrations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&entry));
    l.entry.set(Arc::into_raw(entry));
    l.state.set(REGISTERED);
    true
}

#[cold]
fn count_drop(l: &Local, kind: usize) {
    let entry = l.entry.get();
    if !entry.is_null() {
        // SAFETY: the entry lives while this thread is registered.
        let counter = unsafe { &(*entry).dropped[kind] };
        // Only this thread writes its counters: a load and a store, no read-modify-write.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Makes `need` bytes available in the chunk of `kind`: registers the thread, hands the full
/// chunk to the sink, installs a spare or a new one. False when the event must be dropped.
#[cold]
#[inline(never)]
fn make_room(l: &Local, kind: usize, need: usize) -> bool {
    match l.state.get() {
        REGISTERED => {}
        NEW => {
            if !register(l) {
                return false;
            }
        }
        _ => return false,
    }
    let cursor = &l.cursors[kind];
    if cursor.busy.get() {
        count_drop(l, kind);
        return false;
    }
    if cursor.room() >= need {
        return true;
    }
    let Some(shared) = shared() else {
        return false;
    };
    if !shared.accepting.load(Ordering::Relaxed) {
        return false;
    }
    let old = cursor.chunk.get();
    // The full chunk's bytes are counted as queued before it is handed over, within the budget.
    let mut queued_before = None;
    if !old.is_null() {
        // SAFETY: the current chunk is live.
        let cap = unsafe { (*old).cap };
        let limit = if kind == THREAD {
            shared.soft_limit
        } else {
            shared.hard_limit
        };
        let Some(before) = shared.reserve(cap, limit) else {
            count_drop(l, kind);
            return false;
        };
        queued_before = Some((before, cap));
    }
    let cap = if need <= shared.chunk_bytes {
        shared.chunk_bytes
    } else {
        (need + 63) & !63
    };
    let Some(fresh) = take_spare(l, cap).or_else(|| Chunk::alloc(cap)) else {
        if let Some((_, old_cap)) = queued_before {
            shared.queued_bytes.fetch_sub(old_cap, Ordering::Relaxed);
        }
        count_drop(l, kind);
        return false;
    };
    let entry = l.entry.get();
    let seq = cursor.seq.get();
    cursor.seq.set(seq + 1);
    let data = Chunk::data(fresh);
    // SAFETY: `fresh` is owned by this thread and not published yet.
    unsafe {
        (*fresh).next.store(ptr::null_mut(), Ordering::Relaxed);
        (*fresh).owner = entry;
        (*fresh).kind = kind;
        (*fresh).seq = seq;
        (*fresh).committed.store(data as usize, Ordering::Relaxed);
        (*fresh).consumed.store(0, Ordering::Relaxed);
        (*entry).current[kind].store(fresh, Ordering::Release);
    }
    cursor.chunk.set(fresh);
    cursor.pos.set(data);
    cursor.end.set(data.wrapping_add(cap));
    if let Some((before, old_cap)) = queued_before {
        shared.push(old);
        if before < shared.wake_bytes && before + old_cap >= shared.wake_bytes {
            shared.wake_sink();
        }
    }
    true
}

fn take_spare(l: &Local, cap: usize) -> Option<*mut Chunk> {
    let shared = shared()?;
    if cap != shared.chunk_bytes {
        return None;
    }
    let mut head = l.spares.get();
    if head.is_null() {
        // SAFETY: the entry lives while this thread is registered.
        head = unsafe {
            let entry = &*l.entry.get();
            let head = entry.spare.swap(ptr::null_mut(), Ordering::Acquire);
            entry.spare_len.store(0, Ordering::Relaxed);
            head
        };
    }
    if head.is_null() {
        return None;
    }
    // SAFETY: spares are owned by this thread once taken.
    let next = unsafe { (*head).next.load(Ordering::Relaxed) };
    l.spares.set(next);
    Some(head)
}

/// The calling thread's state.
#[inline(always)]
fn local<'a>() -> &'a Local {
    // SAFETY: LOCAL is const-initialized and has no destructor: its storage is valid for
    // the whole life of this thread; callers use the reference within one call on it.
    unsafe { &*LOCAL.with(ptr::from_ref) }
}

/// Appends a fixed-size record.
#[inline(always)]
pub(crate) fn write<const N: usize>(kind: usize, words: [u64; N]) {
    let cursor = &local().cursors[kind];
    if cursor.room() < N * 8 {
        // Nothing is live after this call: the fast path needs no saved registers.
        write_slow(kind, &words);
        return;
    }
    let pos = cursor.pos.get();
    // SAFETY: `room() >= N * 8`, so `pos .. pos + N * 8` is inside the current chunk,
    // past `committed`: nobody reads it before the release store below. `pos` is 8-byte
    // aligned (records are multiples of 8 bytes and chunk data is 64-aligned).
    unsafe {
        ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), pos, N * 8);
        let end = pos.add(N * 8);
        cursor.pos.set(end);
        (*cursor.chunk.get())
            .committed
            .store(end as usize, Ordering::Release);
    }
}

#[cold]
#[inline(never)]
fn write_slow(kind: usize, words: &[u64]) {
    let l = local();
    let len = words.len() * 8;
    if !make_room(l, kind, len) {
        return;
    }
    let cursor = &l.cursors[kind];
    let pos = cursor.pos.get();
    // SAFETY: `make_room` made `len` bytes available at `pos`, as in `write`.
    unsafe {
        ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), pos, len);
        let end = pos.add(len);
        cursor.pos.set(end);
        (*cursor.chunk.get())
            .committed
            .store(end as usize, Ordering::Release);
    }
}

/// `fmt::Write` into the free part of a chunk; counts what does not fit.
pub(crate) struct ChunkWriter {
    pos: *mut u8,
    end: *mut u8,
    /// Bytes written.
    written: usize,
    /// Bytes the formatting produced (more than `written` after an overflow).
    wanted: usize,
    /// Keep what fits instead of only counting.
    truncate: bool,
    full: bool,
}

impl fmt::Write for ChunkWriter {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.wanted += s.len();
        if self.full {
            return Ok(());
        }
        let room = (self.end as usize).wrapping_sub(self.pos as usize);
        let take = if s.len() <= room {
            s.len()
        } else {
            self.full = true;
            if !self.truncate {
                return Ok(());
            }
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            cut
        };
        // SAFETY: `take <= room`, so the copy stays inside the chunk's free part.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), self.pos, take);
            self.pos = self.pos.add(take);
        }
        self.written += take;
        Ok(())
    }
}

/// `fmt::Write` into the free part of a chunk; fails when the message does not fit.
struct FastWriter {
    pos: *mut u8,
    end: *mut u8,
    full: bool,
}

impl fmt::Write for FastWriter {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > (self.end as usize).wrapping_sub(self.pos as usize) {
            self.full = true;
            return Err(fmt::Error);
        }
        // SAFETY: the bytes fit between `pos` and `end`, inside the chunk's free part.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), self.pos, s.len());
            self.pos = self.pos.add(s.len());
        }
        Ok(())
    }
}

/// Room kept beyond the fixed part of a formatted record before trying the fast path.
const FMT_SLACK: usize = 128;

/// Appends a formatted record (`head` words, a length word, the message, padding), the
/// message formatted straight into the chunk. The common case (the message fits in the
/// chunk) takes this path; the others go through [`write_var`].
#[inline(always)]
pub(crate) fn write_fmt<const N: usize>(kind: usize, head: [u64; N], args: fmt::Arguments<'_>) {
    let cursor = &local().cursors[kind];
    if cursor.room() >= N * 8 + 8 + FMT_SLACK {
        let pos = cursor.pos.get();
        // SAFETY: the room check covers the head and the length word.
        let (len_at, text) = unsafe {
            ptr::copy_nonoverlapping(head.as_ptr().cast::<u8>(), pos, N * 8);
            (pos.add(N * 8), pos.add(N * 8 + 8))
        };
        let mut w = FastWriter {
            pos: text,
            end: cursor.end.get().wrapping_sub(7),
            full: false,
        };
        {
            let _busy = Busy::enter(cursor);
            // A `Display` that fails leaves what it wrote: the message is then cut.
            let _cut = fmt::write(&mut w, args);
        }
        if !w.full {
            let len = (w.pos as usize) - (text as usize);
            let word = len as u64;
            let padded = (N * 8 + 8 + len + 7) & !7;
            // SAFETY: the length word is inside the record; the padded end is at most
            // `end - 7 + 7`, the chunk's end.
            unsafe {
                ptr::copy_nonoverlapping((&raw const word).cast::<u8>(), len_at, 8);
                let end = pos.add(padded);
                cursor.pos.set(end);
                (*cursor.chunk.get())
                    .committed
                    .store(end as usize, Ordering::Release);
            }
            return;
        }
    }
    write_var(kind, &head, &[], |w| fmt::write(w, args));
}

/// Appends a variable-size record: `head` words, a length word
/// (`prefix.len() << 32 | message length`), `prefix`, the message `body` writes, padding to
/// 8 bytes. The message is formatted straight into the chunk: no allocation.
#[inline(never)]
pub(crate) fn write_var<F>(kind: usize, head: &[u64], prefix: &[u8], mut body: F)
where
    F: FnMut(&mut ChunkWriter) -> fmt::Result,
{
    let fixed = head.len() * 8 + 8 + prefix.len();
    LOCAL.with(|l| {
        let mut truncate = false;
        let mut need = fixed + 64;
        for _attempt in 0..2 {
            let cursor = &l.cursors[kind];
            if cursor.room() < need && !make_room(l, kind, need) {
                return;
            }
            let pos = cursor.pos.get();
            // Leave 7 bytes for the padding.
            let limit = cursor.end.get().wrapping_sub(7);
            // SAFETY: `room() >= need >= fixed`, so the head, length word and prefix fit;
            // the message writer is bounded by `limit`, inside the chunk. Nothing here is
            // published before the release store.
            let (len_at, text) = unsafe {
                ptr::copy_nonoverlapping(head.as_ptr().cast::<u8>(), pos, head.len() * 8);
                let len_at = pos.add(head.len() * 8);
                let text = len_at.add(8);
                ptr::copy_nonoverlapping(prefix.as_ptr(), text, prefix.len());
                (len_at, text)
            };
            let mut w = ChunkWriter {
                pos: text.wrapping_add(prefix.len()),
                end: limit,
                written: 0,
                wanted: 0,
                truncate,
                full: false,
            };
            {
                // Nested events of this kind (a `Display` that logs) see a full chunk and
                // are dropped, even if the formatting panics.
                let _busy = Busy::enter(cursor);
                // A `Display` that fails leaves what it wrote: the message is then cut.
                let _cut = body(&mut w);
            }
            if w.full && !truncate {
                // Retry once in a chunk large enough, keeping what fits of a message
                // longer than the largest record.
                truncate = true;
                need = (fixed + w.wanted + 8).min(MAX_RECORD);
                continue;
            }
            let word = ((prefix.len() as u64) << 32) | w.written as u64;
            let padded = (fixed + w.written + 7) & !7;
            // SAFETY: the length word is inside the record reserved above; the padded end
            // is at most `limit + 7`, the chunk's end.
            unsafe {
                ptr::copy_nonoverlapping((&raw const word).cast::<u8>(), len_at, 8);
                let end = pos.add(padded);
                cursor.pos.set(end);
                (*cursor.chunk.get())
                    .committed
                    .store(end as usize, Ordering::Release);
            }
            return;
        }
    });
}

struct Busy<'a> {
    cursor: &'a Cursor,
    end: *mut u8,
}

impl<'a> Busy<'a> {
    fn enter(cursor: &'a Cursor) -> Self {
        let end = cursor.end.replace(cursor.pos.get());
        cursor.busy.set(true);
        Self { cursor, end }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.cursor.end.set(self.end);
        self.cursor.busy.set(false);
    }
}

/// A fresh process-wide async span id (from 1), without touching shared memory most of the
/// time: each thread reserves ids in ranges.
pub(crate) fn next_span_id() -> u64 {
    LOCAL.with(|l| {
        let id = l.next_span.get();
        if id != 0 && id < l.span_limit.get() {
            l.next_span.set(id + 1);
            return id;
        }
        refill_span_ids(l)
    })
}

#[cold]
fn refill_span_ids(l: &Local) -> u64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(1);
    let counter = shared().map_or(&FALLBACK, |s| &s.next_span_range);
    let start = counter.fetch_add(SPAN_RANGE, Ordering::Relaxed);
    l.next_span.set(start + 1);
    l.span_limit.set(start + SPAN_RANGE);
    start
}

/// Sums the events the threads dropped, per kind.
pub(crate) fn dropped_by(entry: &ThreadEntry) -> [u64; KINDS] {
    [
        entry.dropped[LOG].load(Ordering::Relaxed),
        entry.dropped[METRICS].load(Ordering::Relaxed),
        entry.dropped[THREAD].load(Ordering::Relaxed),
    ]
}

/// Reads the records of a byte range, as (code word, words, trailing bytes).
pub(crate) struct RecordReader<'a> {
    bytes: &'a [u8],
}

impl<'a> RecordReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next `n` words.
    pub fn words<const N: usize>(&mut self) -> Option<[u64; N]> {
        let (head, rest) = self.bytes.split_at_checked(N * 8)?;
        let mut out = [0u64; N];
        for (w, b) in out.iter_mut().zip(head.as_chunks::<8>().0) {
            *w = u64::from_ne_bytes(*b);
        }
        self.bytes = rest;
        Some(out)
    }

    /// A length word then its bytes (padded): returns (prefix, message).
    pub fn text(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let [word] = self.words::<1>()?;
        let prefix = usize::try_from(word >> 32).ok()?;
        let msg = usize::try_from(word & 0xffff_ffff).ok()?;
        let total = prefix.checked_add(msg)?;
        let padded = (total + 7) & !7;
        let bytes = self.bytes.get(..total)?;
        self.bytes = self.bytes.get(padded..).unwrap_or_default();
        Some((&bytes[..prefix], &bytes[prefix..]))
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
