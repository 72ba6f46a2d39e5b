//! Spans: thread spans (a guard that records begin and end on the current thread) and async
//! spans (a future wrapper that records begin at its first poll and end at completion or
//! cancellation, with a process-wide span id, its parent's id and its depth).

use crate::buffer::{LOCAL, THREAD, code, next_span_id, write, write_var};
use crate::callsite::{SpanLocation, SpanMetadata};
use crate::time::now;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

#[inline(always)]
fn addr<T>(r: &'static T) -> u64 {
    std::ptr::from_ref(r) as usize as u64
}

/// A thread span: begins when created, ends when dropped ([`crate::span_scope!`]).
/// Not `Send`: a thread span begins and ends on one thread.
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct ThreadSpanGuard {
    desc: Option<&'static SpanMetadata>,
    _not_send: PhantomData<*const ()>,
}

impl ThreadSpanGuard {
    /// Begins a span (when its call site is enabled).
    #[inline(always)]
    pub fn new(desc: &'static SpanMetadata) -> Self {
        if !desc.callsite.enabled() {
            return Self {
                desc: None,
                _not_send: PhantomData,
            };
        }
        let time = now();
        write(THREAD, [code::BEGIN_SPAN, addr(desc), time as u64]);
        Self {
            desc: Some(desc),
            _not_send: PhantomData,
        }
    }
}

impl Drop for ThreadSpanGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(desc) = self.desc {
            let time = now();
            write(THREAD, [code::END_SPAN, addr(desc), time as u64]);
        }
    }
}

/// The name of a span given at run time: a static string (recorded without copying) or an
/// owned one (copied into the buffer at begin and end).
#[derive(Debug, Clone)]
pub enum SpanName {
    /// A static name.
    Static(&'static str),
    /// A name built at run time.
    Owned(String),
}

impl From<&'static str> for SpanName {
    fn from(s: &'static str) -> Self {
        Self::Static(s)
    }
}

impl From<String> for SpanName {
    fn from(s: String) -> Self {
        Self::Owned(s)
    }
}

fn named_event(begin: bool, location: &'static SpanLocation, name: &SpanName) {
    let time = now();
    match name {
        SpanName::Static(s) => write(
            THREAD,
            [
                if begin {
                    code::BEGIN_NAMED_STATIC
                } else {
                    code::END_NAMED_STATIC
                },
                addr(location),
                time as u64,
                s.as_ptr() as usize as u64,
                s.len() as u64,
            ],
        ),
        SpanName::Owned(s) => {
            let bytes = s.as_bytes();
            let bytes = bytes.get(..bytes.len().min(4096)).unwrap_or_default();
            write_var(
                THREAD,
                &[
                    if begin {
                        code::BEGIN_NAMED
                    } else {
                        code::END_NAMED
                    },
                    addr(location),
                    time as u64,
                ],
                bytes,
                |_| Ok(()),
            );
        }
    }
}

/// A thread span whose name is given at run time ([`crate::span_scope_named!`]).
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct ThreadNamedSpanGuard {
    location: &'static SpanLocation,
    name: Option<SpanName>,
    _not_send: PhantomData<*const ()>,
}

impl ThreadNamedSpanGuard {
    /// Begins a span (when its call site is enabled).
    pub fn new(location: &'static SpanLocation, name: impl Into<SpanName>) -> Self {
        let name = if location.callsite.enabled() {
            let name = name.into();
            named_event(true, location, &name);
            Some(name)
        } else {
            None
        };
        Self {
            location,
            name,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ThreadNamedSpanGuard {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            named_event(false, self.location, name);
        }
    }
}

/// The async span being polled on this thread, if any.
pub fn current_span_id() -> Option<u64> {
    LOCAL.with(|l| Some(l.async_span.get()).filter(|id| *id != 0))
}

/// Context of the async span being polled: restored when dropped, even by a panic.
struct ContextGuard {
    span: u64,
    depth: u32,
}

impl ContextGuard {
    fn enter(span: u64, depth: u32) -> Self {
        LOCAL.with(|l| Self {
            span: l.async_span.replace(span),
            depth: l.async_depth.replace(depth),
        })
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        LOCAL.with(|l| {
            l.async_span.set(self.span);
            l.async_depth.set(self.depth);
        });
    }
}

fn parent_context() -> (u64, u32) {
    LOCAL.with(|l| {
        let parent = l.async_span.get();
        let depth = if parent == 0 {
            0
        } else {
            l.async_depth.get() + 1
        };
        (parent, depth)
    })
}

#[derive(Debug, Clone, Copy)]
enum What {
    Desc(&'static SpanMetadata),
    Named(&'static SpanLocation, &'static str),
}

impl What {
    fn enabled(self) -> bool {
        match self {
            What::Desc(d) => d.callsite.enabled(),
            What::Named(l, _) => l.callsite.enabled(),
        }
    }

    fn record(self, begin: bool, ids: &Ids) {
        let time = now() as u64;
        match self {
            What::Desc(d) => write(
                THREAD,
                [
                    if begin {
                        code::BEGIN_ASYNC
                    } else {
                        code::END_ASYNC
                    },
                    addr(d),
                    time,
                    ids.span,
                    ids.parent,
                    u64::from(ids.depth),
                ],
            ),
            What::Named(l, name) => write(
                THREAD,
                [
                    if begin {
                        code::BEGIN_ASYNC_NAMED
                    } else {
                        code::END_ASYNC_NAMED
                    },
                    addr(l),
                    time,
                    ids.span,
                    ids.parent,
                    u64::from(ids.depth),
                    name.as_ptr() as usize as u64,
                    name.len() as u64,
                ],
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ids {
    span: u64,
    parent: u64,
    depth: u32,
}

#[derive(Debug, Clone, Copy)]
enum State {
    NotStarted,
    Running(Ids),
    Off,
    Done,
}

/// A future recorded as an async span: begin at the first poll, end at completion (or when
/// dropped unfinished). While it is polled it is the parent of the async spans its inner
/// futures begin. Built by [`InstrumentFuture::instrument`], [`crate::instrument_named!`]
/// and `#[span_fn]` on `async fn`.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct InstrumentedFuture<F> {
    inner: F,
    what: What,
    state: State,
}

impl<F> InstrumentedFuture<F> {
    /// Wraps `inner` in a span described by `desc`.
    pub fn new(inner: F, desc: &'static SpanMetadata) -> Self {
        Self {
            inner,
            what: What::Desc(desc),
            state: State::NotStarted,
        }
    }

    /// Wraps `inner` in a span named `name`, at `location`.
    pub fn named(inner: F, location: &'static SpanLocation, name: &'static str) -> Self {
        Self {
            inner,
            what: What::Named(location, name),
            state: State::NotStarted,
        }
    }
}

impl<F: Future> Future for InstrumentedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is never moved out of the pinned struct; the other fields are
        // `Unpin` and not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if let State::NotStarted = this.state {
            this.state = if this.what.enabled() {
                let (parent, depth) = parent_context();
                let ids = Ids {
                    span: next_span_id(),
                    parent,
                    depth,
                };
                this.what.record(true, &ids);
                State::Running(ids)
            } else {
                State::Off
            };
        }
        // SAFETY: `inner` is pinned because `self` is.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        match this.state {
            State::Running(ids) => {
                let result = {
                    let _context = ContextGuard::enter(ids.span, ids.depth);
                    inner.poll(cx)
                };
                if result.is_ready() {
                    this.what.record(false, &ids);
                    this.state = State::Done;
                }
                result
            }
            _ => inner.poll(cx),
        }
    }
}

impl<F> Drop for InstrumentedFuture<F> {
    fn drop(&mut self) {
        // Cancelled: the span ends when the future is dropped.
        if let State::Running(ids) = self.state {
            self.what.record(false, &ids);
        }
    }
}

/// `.instrument(desc)` on any future.
pub trait InstrumentFuture: Future + Sized {
    /// Records this future as an async span described by `desc` ([`crate::static_span_desc!`]).
    fn instrument(self, desc: &'static SpanMetadata) -> InstrumentedFuture<Self> {
        InstrumentedFuture::new(self, desc)
    }
}

impl<F: Future> InstrumentFuture for F {}

/// A future that runs in the async span context in force where it was created, so that the
/// spans it begins have that span as their parent even on another task or thread.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct SpanContextFuture<F> {
    inner: F,
    span: u64,
    depth: u32,
}

impl<F> SpanContextFuture<F> {
    /// Captures the current context for `inner`.
    pub fn new(inner: F) -> Self {
        let (span, depth) = LOCAL.with(|l| (l.async_span.get(), l.async_depth.get()));
        Self { inner, span, depth }
    }
}

impl<F: Future> Future for SpanContextFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned and never moved; the ids are plain data.
        let this = unsafe { self.get_unchecked_mut() };
        let _context = ContextGuard::enter(this.span, this.depth);
        // SAFETY: `inner` is pinned because `self` is.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

/// `tokio::spawn`, keeping the current async span as the parent of the spans the task begins.
#[cfg(feature = "tokio")]
pub fn spawn_with_context<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(SpanContextFuture::new(future))
}
