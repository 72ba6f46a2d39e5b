//! Typed events: what a block of a `log`, `metrics`, `cpu` or `image` stream means.
//!
//! [`StreamDecoder`] is built once per stream from its type descriptions. It dispatches on
//! the UDT names upstream's analytics dispatches on and reads members by the names upstream
//! reads, through precomputed [`Plan`]s: decoding an event allocates nothing, except for a
//! message that must be transcoded (UTF-16, invalid UTF-8) or rendered (a template log).
//! Strings and property sets are borrowed from the block's [`Dependencies`].
//!
//! | UDT names | event |
//! |---|---|
//! | `LogStaticStrEvent`, `TaggedLogStaticStrEvent` | log; message = descriptor's `fmt_str` |
//! | `TaggedLogTemplateEvent` (0.33) | log; message = `fmt_str` with `{name}` / `{name:?}` replaced by properties ([`render_template`]) |
//! | `LogStringEventV2`, `TaggedLogString`, legacy `LogStringEvent` | log; message in the record |
//! | `LogStaticStrInteropEvent`, `LogStaticStrInteropEventV2` (0.33) | log from the `log`/`tracing` bridge; `target` and `msg` are string references |
//! | `LogStringInteropEventV3`, `TaggedLogInteropEvent`, legacy `LogStringInteropEventV2` | log from the bridge, message in the record |
//! | `IntegerMetricEvent`, `FloatMetricEvent`, `Tagged{Integer,Float}MetricEvent` | measure |
//! | `{Begin,End}{Thread,Async}SpanEvent` | span begin/end, name from the `SpanRecord` descriptor |
//! | `{Begin,End}{Thread,Async}NamedSpanEvent`, `...DynNamedSpanEvent` (0.33) | span begin/end, name from the event, location from a `SpanLocationRecord` |
//! | `TaggedEnd{Thread,Async}[Named]SpanEvent` (0.33) | span end carrying the span's properties |
//! | `ImageEvent` | image |
//!
//! Property overrides (0.33): for logs written by the `log!` family, a property `level`
//! (a level name) replaces the level and `target` the target; for measures, `name`, `unit`
//! and `target` replace the descriptor's (this is how `imetric_dyn!`/`fmetric_dyn!` send
//! run-time names: their descriptor has an empty name and unit). Interop logs keep their own
//! level and target. The properties themselves are returned unchanged.
//!
//! Times are absolute ticks, as in the records; converting them needs the process's
//! `start_ticks`/`start_time` and `tsc_frequency`. A measure whose unit is `ticks` is
//! returned as is (upstream converts it to seconds with the tick frequency).

use super::super::envelope::{BlockPayload, StreamInfo, Udt};
use super::super::error::NativeError;
use super::super::lz4::decompress_frame;
use super::deps::parse_dependencies;
use super::object::{DynFields, DynKind, RefLayouts, UdtIndex, decode_dynamic};
use super::plan::{Field, FieldKind, Plan};
use super::read::{Record, Records, records};
use super::value::{Dependencies, Dependency, Object, PropertySet, Text};
use std::borrow::Cow;

/// A log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry<'a> {
    /// UDT name of the record.
    pub type_name: &'a str,
    /// Absolute ticks.
    pub time: i64,
    /// 1 = fatal, 2 = error, 3 = warn, 4 = info, 5 = debug, 6 = trace.
    pub level: u32,
    /// Target (module path by default).
    pub target: &'a str,
    /// The message.
    pub msg: Text<'a>,
    /// Module of the call site (descriptor-based logs only).
    pub module_path: Option<&'a str>,
    /// Source file of the call site (descriptor-based logs only).
    pub file: Option<&'a str>,
    /// Source line of the call site (descriptor-based logs only).
    pub line: Option<u32>,
    /// Properties of a tagged log.
    pub properties: Option<&'a PropertySet>,
}

/// A measure value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeasureValue {
    /// From an integer metric (`value: u64`).
    Int(u64),
    /// From a float metric (`value: f64`).
    Float(f64),
}

impl MeasureValue {
    /// The value as f64, as upstream's `measures.value` column holds it.
    pub fn as_f64(self) -> f64 {
        match self {
            MeasureValue::Int(v) => v as f64,
            MeasureValue::Float(v) => v,
        }
    }
}

/// A metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure<'a> {
    /// UDT name of the record.
    pub type_name: &'a str,
    /// Absolute ticks.
    pub time: i64,
    /// Metric name (after the `name` property override).
    pub name: &'a str,
    /// Unit (after the `unit` property override).
    pub unit: &'a str,
    /// Target (after the `target` property override).
    pub target: &'a str,
    /// Source file of the call site.
    pub file: Option<&'a str>,
    /// Source line of the call site.
    pub line: Option<u32>,
    /// Level of detail (1 = min, 2 = med, 3 = max).
    pub lod: Option<u32>,
    /// The value.
    pub value: MeasureValue,
    /// Properties of a tagged metric.
    pub properties: Option<&'a PropertySet>,
}

/// Whether a span event opens or closes its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanPhase {
    /// `Begin...` events.
    Begin,
    /// `End...` events.
    End,
}

/// Identity of an async span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncSpan {
    /// Process-wide span id (from 1).
    pub span_id: u64,
    /// The span that created the future (0 when none).
    pub parent_span_id: u64,
    /// Nesting depth in the async call tree.
    pub depth: u32,
}

/// A span begin or end event of a thread stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent<'a> {
    /// UDT name of the record.
    pub type_name: &'a str,
    /// Absolute ticks.
    pub time: i64,
    /// Begin or end.
    pub phase: SpanPhase,
    /// Span name.
    pub name: &'a str,
    /// Target of the call site.
    pub target: &'a str,
    /// Module of the call site.
    pub module_path: Option<&'a str>,
    /// Source file of the call site.
    pub file: Option<&'a str>,
    /// Source line of the call site.
    pub line: Option<u32>,
    /// Level of detail.
    pub lod: Option<u32>,
    /// Set for async spans; thread spans nest by begin/end order on their thread.
    pub async_span: Option<AsyncSpan>,
    /// Properties (on `TaggedEnd...` events only).
    pub properties: Option<&'a PropertySet>,
}

/// An image of an `image` stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<'a> {
    /// Absolute ticks.
    pub time: i64,
    /// Image name.
    pub name: Text<'a>,
    /// Image format (e.g. `png`).
    pub format: Text<'a>,
    /// Encoded image.
    pub data: &'a [u8],
}

/// One decoded object record.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A log entry.
    Log(LogEntry<'a>),
    /// A metric point.
    Measure(Measure<'a>),
    /// A span begin or end.
    Span(SpanEvent<'a>),
    /// An image.
    Image(Image<'a>),
    /// A record of a type Tarn does not interpret (Unreal's `net` events, future types...).
    /// [`super::parse_object`] decodes it generically.
    Other {
        /// UDT name of the record.
        type_name: &'a str,
        /// The record bytes.
        payload: &'a [u8],
    },
}

/// The decompressed payload of one block, with its dependencies decoded.
#[derive(Debug, Clone)]
pub struct BlockContent {
    /// The dependencies, by id.
    pub dependencies: Dependencies,
    /// The decompressed object records.
    pub objects: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogForm {
    /// Message = `desc.fmt_str`.
    Static,
    /// Message = `desc.fmt_str` rendered with the properties.
    Template,
    /// Bridge log with string references for target and message.
    Interop,
}

#[derive(Debug, Clone)]
struct LogPlan {
    form: LogForm,
    time: Field,
    desc: Option<Field>,
    properties: Option<Field>,
    level: Option<Field>,
    target: Option<Field>,
    msg: Option<Field>,
}

#[derive(Debug, Clone)]
struct MeasurePlan {
    time: Field,
    desc: Field,
    value: Field,
    properties: Option<Field>,
}

#[derive(Debug, Clone)]
struct SpanPlan {
    phase: SpanPhase,
    time: Field,
    /// `SpanRecord` (unnamed) or `SpanLocationRecord` (named).
    desc: Field,
    /// The name reference of named spans.
    name: Option<Field>,
    async_ids: Option<(Field, Field, Field)>,
    properties: Option<Field>,
}

#[derive(Debug, Clone)]
enum EventPlan {
    Log(LogPlan),
    Measure(MeasurePlan),
    Span(SpanPlan),
    Dynamic(DynKind),
    Other,
}

/// Decodes the blocks of one stream into [`Event`]s.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    dependencies_metadata: Vec<Udt>,
    objects_metadata: Vec<Udt>,
    plans: Vec<Result<EventPlan, NativeError>>,
    layouts: RefLayouts,
}

impl StreamDecoder {
    /// Prepares the decoding of a stream's blocks. Never fails: a type that cannot be
    /// decoded makes only its own records fail.
    pub fn new(dependencies_metadata: Vec<Udt>, objects_metadata: Vec<Udt>) -> Self {
        let index = UdtIndex::new(&objects_metadata);
        let plans = objects_metadata
            .iter()
            .take(256)
            .map(|udt| plan_event(udt, &index))
            .collect();
        let layouts = RefLayouts::new(&objects_metadata);
        Self {
            dependencies_metadata,
            objects_metadata,
            plans,
            layouts,
        }
    }

    /// [`StreamDecoder::new`] with the metadata of a `StreamInfo`.
    pub fn from_stream(stream: &StreamInfo) -> Self {
        Self::new(
            stream.dependencies_metadata.clone(),
            stream.objects_metadata.clone(),
        )
    }

    /// Types of the dependency records.
    pub fn dependencies_metadata(&self) -> &[Udt] {
        &self.dependencies_metadata
    }

    /// Types of the object records.
    pub fn objects_metadata(&self) -> &[Udt] {
        &self.objects_metadata
    }

    /// Decodes a decompressed dependency buffer (see [`parse_dependencies`]).
    pub fn parse_dependencies(&self, buf: &[u8]) -> Result<Dependencies, NativeError> {
        parse_dependencies(buf, &self.dependencies_metadata)
    }

    /// Decompresses a block payload (at most `limit` bytes for both buffers together) and
    /// decodes its dependencies.
    pub fn decode_payload(
        &self,
        payload: &BlockPayload,
        limit: usize,
    ) -> Result<BlockContent, NativeError> {
        let deps = decompress_frame(&payload.dependencies, limit)?;
        let objects = decompress_frame(&payload.objects, limit.saturating_sub(deps.len()))?;
        Ok(BlockContent {
            dependencies: self.parse_dependencies(&deps)?,
            objects,
        })
    }

    /// The events of a decoded block.
    pub fn events<'a>(&'a self, content: &'a BlockContent) -> Events<'a> {
        self.events_of(&content.objects, &content.dependencies)
    }

    /// The events of a decompressed object buffer, resolved against `deps`.
    pub fn events_of<'a>(&'a self, objects: &'a [u8], deps: &'a Dependencies) -> Events<'a> {
        Events {
            decoder: self,
            records: records(objects, &self.objects_metadata),
            deps,
            cache: DescCache::default(),
        }
    }

    /// Decodes one object record.
    pub fn decode_record<'a>(
        &'a self,
        record: Record<'a>,
        deps: &'a Dependencies,
    ) -> Result<Event<'a>, NativeError> {
        self.decode_cached(record, deps, None)
    }

    fn decode_cached<'a>(
        &'a self,
        record: Record<'a>,
        deps: &'a Dependencies,
        cache: Option<&mut DescCache<'a>>,
    ) -> Result<Event<'a>, NativeError> {
        let index = usize::from(record.type_index);
        let (Some(udt), Some(plan)) = (self.objects_metadata.get(index), self.plans.get(index))
        else {
            return Err(NativeError::BadTypeIndex {
                index: record.type_index,
                count: self.objects_metadata.len(),
                offset: record.offset,
            });
        };
        let plan = plan.as_ref().map_err(Clone::clone)?;
        let p = record.payload;
        let mut ctx = Ctx { udt, deps, cache };
        match plan {
            EventPlan::Log(plan) => ctx.log(plan, p).map(Event::Log),
            EventPlan::Measure(plan) => ctx.measure(plan, p).map(Event::Measure),
            EventPlan::Span(plan) => ctx.span(plan, p).map(Event::Span),
            EventPlan::Dynamic(kind) => {
                let fields = decode_dynamic(*kind, p, &self.layouts)?;
                ctx.dynamic(fields)
            }
            EventPlan::Other => Ok(Event::Other {
                type_name: &udt.name,
                payload: p,
            }),
        }
    }
}

/// Iterator over the events of a block; see [`StreamDecoder::events`].
///
/// An error that concerns one record (a missing dependency, a bad member) is yielded and
/// the iteration goes on; a framing error ends it. Collect into `Result<Vec<_>, _>` for
/// upstream's all-or-nothing behaviour.
#[derive(Debug, Clone)]
pub struct Events<'a> {
    decoder: &'a StreamDecoder,
    records: Records<'a>,
    deps: &'a Dependencies,
    cache: DescCache<'a>,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, NativeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.records.next()?;
        Some(record.and_then(|r| {
            self.decoder
                .decode_cached(r, self.deps, Some(&mut self.cache))
        }))
    }
}

/// The members of a descriptor dependency (`LogMetadataRecord`, `MetricMetadataDependency`,
/// `SpanRecord`, `SpanLocationRecord`), found in one pass over its members.
#[derive(Debug, Clone, Copy)]
struct Desc<'a> {
    object: &'a Object,
    fmt_str: Option<&'a str>,
    name: Option<&'a str>,
    unit: Option<&'a str>,
    target: Option<&'a str>,
    module_path: Option<&'a str>,
    file: Option<&'a str>,
    line: Option<u32>,
    level: Option<u32>,
    lod: Option<u32>,
}

impl<'a> Desc<'a> {
    fn new(object: &'a Object) -> Self {
        let mut d = Desc {
            object,
            fmt_str: None,
            name: None,
            unit: None,
            target: None,
            module_path: None,
            file: None,
            line: None,
            level: None,
            lod: None,
        };
        for (name, value) in &object.members {
            match &**name {
                "fmt_str" => d.fmt_str = value.as_str(),
                "name" => d.name = value.as_str(),
                "unit" => d.unit = value.as_str(),
                "target" => d.target = value.as_str(),
                "module_path" => d.module_path = value.as_str(),
                "file" => d.file = value.as_str(),
                "line" => d.line = value.as_u32(),
                "level" => d.level = value.as_u32(),
                "lod" => d.lod = value.as_u32(),
                _ => {}
            }
        }
        d
    }

    /// A string member the event cannot do without.
    fn required(
        &self,
        value: Option<&'a str>,
        member: &'static str,
    ) -> Result<&'a str, NativeError> {
        match value {
            Some(v) => Ok(v),
            None => {
                Err(desc_str(self.object, member)
                    .err()
                    .unwrap_or(NativeError::MissingMember {
                        udt: self.object.type_name.to_string(),
                        member,
                    }))
            }
        }
    }
}

/// A small direct-mapped cache of descriptors, so that the events of a block resolve each
/// call site once. A collision only costs a miss.
#[derive(Debug, Clone, Default)]
struct DescCache<'a> {
    slots: Vec<Option<(u64, Desc<'a>)>>,
}

impl<'a> DescCache<'a> {
    const SLOTS: usize = 64;

    fn slot(id: u64) -> usize {
        // Fibonacci hashing: the top 6 bits of the product.
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
    }

    fn get(&self, id: u64) -> Option<Desc<'a>> {
        match self.slots.get(Self::slot(id)) {
            Some(Some((key, desc))) if *key == id => Some(*desc),
            _ => None,
        }
    }

    fn put(&mut self, id: u64, desc: Desc<'a>) {
        if self.slots.is_empty() {
            self.slots.resize(Self::SLOTS, None);
        }
        if let Some(slot) = self.slots.get_mut(Self::slot(id)) {
            *slot = Some((id, desc));
        }
    }
}

fn plan_event(udt: &Udt, udts: &UdtIndex<'_>) -> Result<EventPlan, NativeError> {
    let name = &*udt.name;
    if udt.size == 0 {
        return Ok(DynKind::from_name(name).map_or(EventPlan::Other, EventPlan::Dynamic));
    }
    let plan = Plan::with_index(udt, udts);
    let log = |form: LogForm| -> Result<EventPlan, NativeError> {
        let interop = form == LogForm::Interop;
        Ok(EventPlan::Log(LogPlan {
            form,
            time: plan.field("time")?,
            desc: if interop {
                None
            } else {
                Some(plan.field("desc")?)
            },
            properties: plan.optional_field("properties")?,
            level: if interop {
                Some(plan.field("level")?)
            } else {
                None
            },
            target: if interop {
                Some(plan.field("target")?)
            } else {
                None
            },
            msg: if interop {
                Some(plan.field("msg")?)
            } else {
                None
            },
        }))
    };
    match name {
        "LogStaticStrEvent" | "TaggedLogStaticStrEvent" => return log(LogForm::Static),
        "TaggedLogTemplateEvent" => return log(LogForm::Template),
        "LogStaticStrInteropEvent" | "LogStaticStrInteropEventV2" => {
            return log(LogForm::Interop);
        }
        "IntegerMetricEvent"
        | "FloatMetricEvent"
        | "TaggedIntegerMetricEvent"
        | "TaggedFloatMetricEvent" => {
            return Ok(EventPlan::Measure(MeasurePlan {
                time: plan.field("time")?,
                desc: plan.field("desc")?,
                value: plan.field("value")?,
                properties: plan.optional_field("properties")?,
            }));
        }
        _ => {}
    }
    // {Tagged}{Begin,End}{Thread,Async}{,Named,DynNamed}SpanEvent
    let rest = name.strip_prefix("Tagged").unwrap_or(name);
    let (phase, rest) = if let Some(r) = rest.strip_prefix("Begin") {
        (SpanPhase::Begin, r)
    } else if let Some(r) = rest.strip_prefix("End") {
        (SpanPhase::End, r)
    } else {
        return Ok(EventPlan::Other);
    };
    let (is_async, rest) = if let Some(r) = rest.strip_prefix("Thread") {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("Async") {
        (true, r)
    } else {
        return Ok(EventPlan::Other);
    };
    let named = match rest {
        "SpanEvent" => false,
        "NamedSpanEvent" | "DynNamedSpanEvent" => true,
        _ => return Ok(EventPlan::Other),
    };
    let desc = if named {
        plan.field_of(&["thread_span_location", "span_location"])?
    } else {
        plan.field_of(&["thread_span_desc", "span_desc"])?
    };
    Ok(EventPlan::Span(SpanPlan {
        phase,
        time: plan.field("time")?,
        desc,
        name: if named {
            Some(plan.field("name")?)
        } else {
            None
        },
        async_ids: if is_async {
            Some((
                plan.field("span_id")?,
                plan.field("parent_span_id")?,
                plan.field("depth")?,
            ))
        } else {
            None
        },
        properties: plan.optional_field("properties")?,
    }))
}

/// Per-record decoding context.
struct Ctx<'a, 'c> {
    udt: &'a Udt,
    deps: &'a Dependencies,
    cache: Option<&'c mut DescCache<'a>>,
}

impl<'a> Ctx<'a, '_> {
    fn desc(&mut self, id: u64) -> Result<Desc<'a>, NativeError> {
        if let Some(desc) = self.cache.as_ref().and_then(|c| c.get(id)) {
            return Ok(desc);
        }
        let desc = Desc::new(self.object(id, "desc")?);
        if let Some(cache) = self.cache.as_mut() {
            cache.put(id, desc);
        }
        Ok(desc)
    }

    fn dep(&self, id: u64, member: &'static str) -> Result<&'a Dependency, NativeError> {
        self.deps
            .get(&id)
            .ok_or_else(|| NativeError::MissingDependency {
                id,
                context: format!("{}.{member}", self.udt.name),
            })
    }

    fn wrong_dep(&self, id: u64, member: &'static str, expected: &'static str) -> NativeError {
        NativeError::DependencyType {
            id,
            context: format!("{}.{member}", self.udt.name),
            expected,
        }
    }

    fn string(&self, id: u64, member: &'static str) -> Result<&'a str, NativeError> {
        match self.dep(id, member)? {
            Dependency::String(s) => Ok(s),
            _ => Err(self.wrong_dep(id, member, "string")),
        }
    }

    fn object(&self, id: u64, member: &'static str) -> Result<&'a Object, NativeError> {
        match self.dep(id, member)? {
            Dependency::Object(o) => Ok(o),
            _ => Err(self.wrong_dep(id, member, "descriptor")),
        }
    }

    fn properties(&self, id: u64) -> Result<&'a PropertySet, NativeError> {
        match self.dep(id, "properties")? {
            Dependency::PropertySet(p) => Ok(p),
            _ => Err(self.wrong_dep(id, "properties", "property set")),
        }
    }

    fn opt_properties(
        &self,
        field: Option<Field>,
        payload: &[u8],
    ) -> Result<Option<&'a PropertySet>, NativeError> {
        field
            .map(|f| f.read_ref(payload).and_then(|id| self.properties(id)))
            .transpose()
    }

    fn log(&mut self, plan: &LogPlan, p: &'a [u8]) -> Result<LogEntry<'a>, NativeError> {
        let time = plan.time.read_i64(p)?;
        let properties = self.opt_properties(plan.properties, p)?;
        if plan.form == LogForm::Interop {
            let level = plan.level.map(|f| f.read_u32(p)).transpose()?.unwrap_or(0);
            let target = match plan.target {
                Some(f) => self.string(f.read_ref(p)?, "target")?,
                None => "",
            };
            let msg = match plan.msg {
                Some(f) => self.string(f.read_ref(p)?, "msg")?,
                None => "",
            };
            return Ok(LogEntry {
                type_name: &self.udt.name,
                time,
                level,
                target,
                msg: Cow::Borrowed(msg),
                module_path: None,
                file: None,
                line: None,
                properties,
            });
        }
        let desc_id = match plan.desc {
            Some(f) => f.read_ref(p)?,
            None => 0,
        };
        let desc = self.desc(desc_id)?;
        let fmt_str = desc.required(desc.fmt_str, "fmt_str")?;
        let msg = match (plan.form, properties) {
            (LogForm::Template, Some(props)) => render_template(fmt_str, props),
            (LogForm::Template, None) => render_template(fmt_str, &PropertySet::default()),
            _ => Cow::Borrowed(fmt_str),
        };
        self.desc_log(time, desc, msg, properties)
    }

    /// A log entry whose level, target and call site come from a `LogMetadataRecord`.
    fn desc_log(
        &self,
        time: i64,
        desc: Desc<'a>,
        msg: Text<'a>,
        properties: Option<&'a PropertySet>,
    ) -> Result<LogEntry<'a>, NativeError> {
        let mut level = match desc.level {
            Some(level) => level,
            None => desc_u32(desc.object, "level")?,
        };
        let mut target = desc.required(desc.target, "target")?;
        if let Some(props) = properties {
            if let Some(l) = props.get("level").and_then(parse_level) {
                level = l;
            }
            if let Some(t) = props.get("target") {
                target = t;
            }
        }
        Ok(LogEntry {
            type_name: &self.udt.name,
            time,
            level,
            target,
            msg,
            module_path: desc.module_path,
            file: desc.file,
            line: desc.line,
            properties,
        })
    }

    fn measure(&mut self, plan: &MeasurePlan, p: &'a [u8]) -> Result<Measure<'a>, NativeError> {
        let time = plan.time.read_i64(p)?;
        let desc = self.desc(plan.desc.read_ref(p)?)?;
        let value = match plan.value.kind {
            FieldKind::F64 => MeasureValue::Float(plan.value.read_f64(p)?),
            _ => MeasureValue::Int(plan.value.read_u64(p)?),
        };
        let properties = self.opt_properties(plan.properties, p)?;
        let mut name = desc.required(desc.name, "name")?;
        let mut unit = desc.unit.unwrap_or_default();
        let mut target = desc.target.unwrap_or_default();
        if let Some(props) = properties {
            name = props.get("name").unwrap_or(name);
            unit = props.get("unit").unwrap_or(unit);
            target = props.get("target").unwrap_or(target);
        }
        Ok(Measure {
            type_name: &self.udt.name,
            time,
            name,
            unit,
            target,
            file: desc.file,
            line: desc.line,
            lod: desc.lod,
            value,
            properties,
        })
    }

    fn span(&mut self, plan: &SpanPlan, p: &'a [u8]) -> Result<SpanEvent<'a>, NativeError> {
        let time = plan.time.read_i64(p)?;
        let desc = self.desc(plan.desc.read_ref(p)?)?;
        let name = match plan.name {
            Some(f) => self.string(f.read_ref(p)?, "name")?,
            None => desc.required(desc.name, "name")?,
        };
        let async_span = match plan.async_ids {
            Some((id, parent, depth)) => Some(AsyncSpan {
                span_id: id.read_u64(p)?,
                parent_span_id: parent.read_u64(p)?,
                depth: depth.read_u32(p)?,
            }),
            None => None,
        };
        Ok(SpanEvent {
            type_name: &self.udt.name,
            time,
            phase: plan.phase,
            name,
            target: desc.target.unwrap_or_default(),
            module_path: desc.module_path,
            file: desc.file,
            line: desc.line,
            lod: desc.lod,
            async_span,
            properties: self.opt_properties(plan.properties, p)?,
        })
    }

    fn dynamic(&mut self, f: DynFields<'a>) -> Result<Event<'a>, NativeError> {
        let properties = f.properties.map(|id| self.properties(id)).transpose()?;
        if f.kind == Some(DynKind::ImageEvent) {
            return Ok(Event::Image(Image {
                time: f.time,
                name: f.name.unwrap_or_default(),
                format: f.format.unwrap_or_default(),
                data: f.data.unwrap_or_default(),
            }));
        }
        let msg = f.msg.unwrap_or_default();
        if let Some(desc_id) = f.desc {
            let desc = self.desc(desc_id)?;
            return Ok(Event::Log(self.desc_log(f.time, desc, msg, properties)?));
        }
        let target = match f.target {
            Some(id) => self.string(id, "target")?,
            None => "",
        };
        Ok(Event::Log(LogEntry {
            type_name: &self.udt.name,
            time: f.time,
            level: f.level.unwrap_or(0),
            target,
            msg,
            module_path: None,
            file: None,
            line: None,
            properties,
        }))
    }
}

fn desc_str<'a>(desc: &'a Object, member: &'static str) -> Result<&'a str, NativeError> {
    match desc.get(member) {
        Some(v) => v.as_str().ok_or_else(|| NativeError::TypeMismatch {
            udt: desc.type_name.to_string(),
            member: member.to_owned(),
            expected: "a string",
            found: v.kind_name(),
        }),
        None => Err(NativeError::MissingMember {
            udt: desc.type_name.to_string(),
            member,
        }),
    }
}

fn desc_u32(desc: &Object, member: &'static str) -> Result<u32, NativeError> {
    match desc.get(member) {
        Some(v) => v.as_u32().ok_or_else(|| NativeError::TypeMismatch {
            udt: desc.type_name.to_string(),
            member: member.to_owned(),
            expected: "u32",
            found: v.kind_name(),
        }),
        None => Err(NativeError::MissingMember {
            udt: desc.type_name.to_string(),
            member,
        }),
    }
}

/// Parses a level name (`fatal`, `error`, `warn`/`warning`, `info`, `debug`, `trace`, any
/// case) or number (1 to 6) into upstream's level number.
pub fn parse_level(text: &str) -> Option<u32> {
    const NAMES: [(&str, u32); 7] = [
        ("fatal", 1),
        ("error", 2),
        ("warn", 3),
        ("warning", 3),
        ("info", 4),
        ("debug", 5),
        ("trace", 6),
    ];
    let text = text.trim();
    if let Some((_, level)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
        return Some(*level);
    }
    text.parse::<u32>().ok().filter(|l| (1..=6).contains(l))
}

/// Renders the format string of a `TaggedLogTemplateEvent`: `{{` and `}}` are literal braces,
/// `{name}` and `{name:?}` are replaced by the value of the property `name` (exact name first,
/// then ASCII-case-insensitive), and anything else is kept verbatim.
pub fn render_template<'a>(fmt: &'a str, properties: &PropertySet) -> Text<'a> {
    if !fmt.contains(['{', '}']) {
        return Cow::Borrowed(fmt);
    }
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut rest = fmt;
    while let Some(at) = rest.find(['{', '}']) {
        let (literal, tail) = rest.split_at(at);
        out.push_str(literal);
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let value = after.find('}').and_then(|close| {
                let inner = after.get(..close)?;
                let key = inner.strip_suffix(":?").unwrap_or(inner);
                let value = properties
                    .iter()
                    .find(|(n, _)| *n == key)
                    .map(|(_, v)| v)
                    .or_else(|| properties.get(key))?;
                Some((value, after.get(close + 1..)?))
            });
            match value {
                Some((value, after)) => {
                    out.push_str(value);
                    rest = after;
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        } else {
            // A lone `}`.
            out.push('}');
            rest = tail.get(1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}
