//! Micromegas' histogram functions, with its struct layout, so its documented queries run:
//!
//! - `make_histogram(start, end, bins, value)` (aggregate): `bins` equal bins over
//!   `[start, end)`; a value below `start` counts in the first bin, one at or past `end` in
//!   the last; nulls are skipped.
//! - `sum_histograms(histogram)` (aggregate): bin by bin; histograms of other bounds or bin
//!   counts are an error.
//! - `quantile_from_histogram(histogram, q)`, `variance_from_histogram(histogram)` (sample
//!   variance, from the sum and the sum of squares), `count_from_histogram(histogram)`,
//!   `sum_from_histogram(histogram)`.
//! - `expand_histogram(histogram)` (table): one row per bin, `bin_center` and `count`; the
//!   argument may be a scalar subquery.
//!
//! A histogram is `Struct{start, end, min, max, sum, sum_sq: Float64, count: UInt64,
//! bins: List<UInt64>}`, every field non-null.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, RecordBatch, StructArray,
    UInt64Array, UInt64Builder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, LogicalPlanBuilder,
    ScalarUDF, Signature, TableType, Volatility, create_udf,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

/// The fields of the histogram struct, in Micromegas' order.
static FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    let float = |name| Field::new(name, DataType::Float64, false);
    Fields::from(vec![
        float("start"),
        float("end"),
        float("min"),
        float("max"),
        float("sum"),
        float("sum_sq"),
        Field::new("count", DataType::UInt64, false),
        Field::new("bins", bins_type(), false),
    ])
});

fn bins_type() -> DataType {
    DataType::List(Arc::new(Field::new("bin", DataType::UInt64, false)))
}

/// The Arrow type of a histogram.
pub fn histogram_type() -> DataType {
    DataType::Struct(FIELDS.clone())
}

/// One histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub start: f64,
    pub end: f64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub sum_sq: f64,
    pub count: u64,
    pub bins: Vec<u64>,
}

impl Histogram {
    /// An empty histogram of `bins` bins over `[start, end)`.
    pub fn new(start: f64, end: f64, bins: i64) -> Result<Histogram> {
        if bins < 1 {
            return plan_err!("make_histogram: the number of bins must be at least 1, not {bins}");
        }
        if !start.is_finite() || !end.is_finite() || start > end {
            return plan_err!("make_histogram: bad bounds [{start}, {end}]");
        }
        let Ok(bins) = usize::try_from(bins) else {
            return plan_err!("make_histogram: {bins} bins is too many");
        };
        // Bins are memory: a typo must not allocate gigabytes.
        if bins > 1_000_000 {
            return plan_err!("make_histogram: {bins} bins is too many (at most 1,000,000)");
        }
        Ok(Histogram {
            start,
            end,
            min: f64::MAX,
            max: f64::MIN,
            sum: 0.0,
            sum_sq: 0.0,
            count: 0,
            bins: vec![0; bins],
        })
    }

    fn width(&self) -> f64 {
        (self.end - self.start) / self.bins.len() as f64
    }

    /// Counts `value`: outside the bounds it goes to the first or the last bin.
    pub fn add(&mut self, value: f64) {
        let last = self.bins.len() - 1;
        // `as` saturates: below the start (and NaN) is 0, past the end is huge.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "saturating is the intent: out-of-range values go to the edge bins"
        )]
        let index = (((value - self.start) / self.width()).floor() as usize).min(last);
        self.bins[index] += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.sum_sq += value * value;
        self.count += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) -> Result<()> {
        if self.start != other.start || self.end != other.end || self.bins.len() != other.bins.len()
        {
            return exec_err!(
                "cannot merge histograms of different bins: [{}, {}) in {} and [{}, {}) in {}",
                self.start,
                self.end,
                self.bins.len(),
                other.start,
                other.end,
                other.bins.len()
            );
        }
        for (mine, theirs) in self.bins.iter_mut().zip(&other.bins) {
            *mine += theirs;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.count += other.count;
        Ok(())
    }

    /// The `q` quantile, interpolated linearly within its bin; `end` when no bin holds it.
    pub fn quantile(&self, q: f64) -> f64 {
        let wanted = self.count as f64 * q;
        let width = self.width();
        let mut below = 0.0;
        for (index, &count) in self.bins.iter().enumerate() {
            let above = below + count as f64;
            if count > 0 && above >= wanted {
                let ratio = (wanted - below) / (above - below);
                let low = self.start + index as f64 * width;
                let high = self.start + (index as f64 + 1.0) * width;
                return (1.0 - ratio) * low + ratio * high;
            }
            below = above;
        }
        self.end
    }

    /// The sample variance, from the sum and the sum of squares (NaN below two values).
    pub fn variance(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.sum / n;
        ((self.sum_sq / n) - mean * mean) * (n / (n - 1.0))
    }
}

/// Histograms (or nulls) as a struct array.
pub fn to_array(histograms: &[Option<Histogram>]) -> StructArray {
    let float = |get: fn(&Histogram) -> f64| {
        let mut builder = Float64Builder::with_capacity(histograms.len());
        for histogram in histograms {
            builder.append_value(histogram.as_ref().map_or(0.0, get));
        }
        Arc::new(builder.finish()) as ArrayRef
    };
    let mut counts = UInt64Builder::with_capacity(histograms.len());
    let mut values = UInt64Builder::new();
    let mut offsets = vec![0_i32];
    let mut total = 0_usize;
    for histogram in histograms {
        counts.append_value(histogram.as_ref().map_or(0, |h| h.count));
        if let Some(histogram) = histogram {
            values.append_slice(&histogram.bins);
            total += histogram.bins.len();
        }
        offsets.push(i32::try_from(total).expect("bins are capped far below 2^31"));
    }
    let bins = ListArray::new(
        Arc::new(Field::new("bin", DataType::UInt64, false)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(values.finish()),
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        float(|h| h.start),
        float(|h| h.end),
        float(|h| h.min),
        float(|h| h.max),
        float(|h| h.sum),
        float(|h| h.sum_sq),
        Arc::new(counts.finish()),
        Arc::new(bins),
    ];
    let nulls = NullBuffer::from(histograms.iter().map(Option::is_some).collect::<Vec<_>>());
    StructArray::new(FIELDS.clone(), columns, Some(nulls))
}

/// Reads the histograms of a struct array (by field name, so a wider struct works too).
pub fn from_array(array: &dyn Array) -> Result<Vec<Option<Histogram>>> {
    let Some(array) = array.as_struct_opt() else {
        return exec_err!("a histogram struct was expected, not {}", array.data_type());
    };
    let column = |name: &str| {
        array.column_by_name(name).ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!(
                "a histogram struct has a field {name}"
            ))
        })
    };
    let float = |name: &str| -> Result<Float64Array> {
        let column = arrow::compute::cast(column(name)?, &DataType::Float64)?;
        Ok(column.as_primitive::<Float64Type>().clone())
    };
    let (start, end, min, max, sum, sum_sq) = (
        float("start")?,
        float("end")?,
        float("min")?,
        float("max")?,
        float("sum")?,
        float("sum_sq")?,
    );
    let count = arrow::compute::cast(column("count")?, &DataType::UInt64)?;
    let count: &UInt64Array = count.as_primitive();
    let Some(bins) = column("bins")?.as_list_opt::<i32>() else {
        return exec_err!("a histogram's bins must be a list");
    };
    let mut out = Vec::with_capacity(array.len());
    for row in 0..array.len() {
        if array.is_null(row) || bins.is_null(row) {
            out.push(None);
            continue;
        }
        let values = arrow::compute::cast(&bins.value(row), &DataType::UInt64)?;
        out.push(Some(Histogram {
            start: start.value(row),
            end: end.value(row),
            min: min.value(row),
            max: max.value(row),
            sum: sum.value(row),
            sum_sq: sum_sq.value(row),
            count: count.value(row),
            bins: values
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values()
                .to_vec(),
        }));
    }
    Ok(out)
}

fn scalar(histogram: Option<&Histogram>) -> ScalarValue {
    ScalarValue::Struct(Arc::new(to_array(&[histogram.cloned()])))
}

/// The histogram of `make_histogram` or `sum_histograms` so far.
#[derive(Debug)]
struct HistogramAccumulator {
    histogram: Option<Histogram>,
    /// `make_histogram` (rows of values) rather than `sum_histograms` (histograms).
    make: bool,
}

impl HistogramAccumulator {
    fn merge_histograms(&mut self, array: &dyn Array) -> Result<()> {
        for histogram in from_array(array)?.into_iter().flatten() {
            match &mut self.histogram {
                Some(mine) => mine.merge(&histogram)?,
                None => self.histogram = Some(histogram),
            }
        }
        Ok(())
    }
}

/// `make_histogram`'s start, end and number of bins as numbers.
fn bounds(start: &ScalarValue, end: &ScalarValue, bins: &ScalarValue) -> Result<(f64, f64, i64)> {
    let as_f64 = |value: &ScalarValue| value.cast_to(&DataType::Float64);
    let (ScalarValue::Float64(Some(start)), ScalarValue::Float64(Some(end))) =
        (as_f64(start)?, as_f64(end)?)
    else {
        return exec_err!("make_histogram: the bounds must be numbers");
    };
    let ScalarValue::Int64(Some(bins)) = bins.cast_to(&DataType::Int64)? else {
        return exec_err!("make_histogram: the number of bins must be an integer");
    };
    Ok((start, end, bins))
}

fn first_param(array: &ArrayRef, what: &str) -> Result<ScalarValue> {
    let value = ScalarValue::try_from_array(array, 0)?;
    if value.is_null() {
        return exec_err!("make_histogram: the {what} is null");
    }
    Ok(value)
}

impl Accumulator for HistogramAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if !self.make {
            return self.merge_histograms(values[0].as_ref());
        }
        let [start, end, bins, values] = values else {
            return exec_err!("make_histogram(start, end, bins, value) takes four arguments");
        };
        if values.is_empty() {
            return Ok(());
        }
        let (start, end, bins) = bounds(
            &first_param(start, "start")?,
            &first_param(end, "end")?,
            &first_param(bins, "number of bins")?,
        )?;
        let histogram = match &mut self.histogram {
            Some(histogram) => {
                if histogram.start != start
                    || histogram.end != end
                    || i64::try_from(histogram.bins.len()) != Ok(bins)
                {
                    return exec_err!("make_histogram: bounds/bins changed between batches");
                }
                histogram
            }
            None => self.histogram.insert(Histogram::new(start, end, bins)?),
        };
        let values = arrow::compute::cast(values, &DataType::Float64)?;
        for value in values.as_primitive::<Float64Type>().iter().flatten() {
            histogram.add(value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(scalar(self.histogram.as_ref()))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .histogram
                .as_ref()
                .map_or(0, |h| h.bins.len() * size_of::<u64>())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![scalar(self.histogram.as_ref())])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_histograms(states[0].as_ref())
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct HistogramAggregate {
    name: &'static str,
    make: bool,
    signature: Signature,
}

impl AggregateUDFImpl for HistogramAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(histogram_type())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let mut histogram = None;
        if self.make {
            // Literal bounds: an empty input still answers an empty histogram, as upstream.
            let literal = |index: usize| {
                args.exprs
                    .get(index)
                    .and_then(|e| e.downcast_ref::<Literal>())
                    .map(|l| l.value().clone())
            };
            if let (Some(start), Some(end), Some(bins)) = (literal(0), literal(1), literal(2))
                && let Ok((start, end, bins)) = bounds(&start, &end, &bins)
            {
                histogram = Some(Histogram::new(start, end, bins)?);
            }
        }
        Ok(Box::new(HistogramAccumulator {
            histogram,
            make: self.make,
        }))
    }
}

/// A scalar function of one histogram (and maybe a float argument).
fn histogram_udf(
    name: &'static str,
    extra: Option<DataType>,
    output: DataType,
    compute: fn(&Histogram, Option<f64>) -> ScalarValue,
) -> ScalarUDF {
    let mut inputs = vec![histogram_type()];
    inputs.extend(extra);
    let output_type = output.clone();
    create_udf(
        name,
        inputs,
        output,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let histograms = from_array(arrays[0].as_ref())?;
            let extra = arrays
                .get(1)
                .map(|array| arrow::compute::cast(array, &DataType::Float64))
                .transpose()?;
            let mut values = Vec::with_capacity(histograms.len());
            for (row, histogram) in histograms.iter().enumerate() {
                let argument = match &extra {
                    Some(array) => {
                        let array = array.as_primitive::<Float64Type>();
                        if array.is_null(row) {
                            return exec_err!("{name}: the quantile is null");
                        }
                        Some(array.value(row))
                    }
                    None => None,
                };
                values.push(match histogram {
                    Some(histogram) => compute(histogram, argument),
                    None => ScalarValue::try_from(&output_type)?,
                });
            }
            let array = ScalarValue::iter_to_array(values)?;
            Ok(ColumnarValue::Array(array))
        }),
    )
}

/// `expand_histogram(histogram)`.
#[derive(Debug)]
struct ExpandHistogram;

static EXPANDED: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("bin_center", DataType::Float64, false),
        Field::new("count", DataType::UInt64, false),
    ]))
});

impl TableFunctionImpl for ExpandHistogram {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [argument] = args else {
            return plan_err!("expand_histogram(histogram) takes one argument");
        };
        Ok(Arc::new(ExpandedHistogram {
            argument: argument.clone(),
        }))
    }
}

/// The bins of a histogram expression, evaluated when scanned.
#[derive(Debug)]
struct ExpandedHistogram {
    argument: Expr,
}

#[async_trait]
impl TableProvider for ExpandedHistogram {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&EXPANDED)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("expand_histogram needs a full DataFusion session");
        };
        // `SELECT <argument>`: a literal, an expression, or a scalar subquery.
        let plan = LogicalPlanBuilder::empty(true)
            .project(vec![self.argument.clone().alias("histogram")])?
            .build()?;
        let physical = session.create_physical_plan(&plan).await?;
        let batches = datafusion::physical_plan::collect(physical, session.task_ctx()).await?;
        let Some(batch) = batches.iter().find(|batch| batch.num_rows() > 0) else {
            return exec_err!("expand_histogram: the argument gave no row");
        };
        if batch.num_columns() != 1 {
            return exec_err!("expand_histogram: the argument must be one histogram");
        }
        let histogram = from_array(batch.column(0).as_ref())?
            .into_iter()
            .next()
            .flatten();
        let mut centers = Float64Builder::new();
        let mut counts = UInt64Builder::new();
        if let Some(histogram) = histogram {
            let width = if (histogram.end - histogram.start).abs() < f64::EPSILON {
                1.0
            } else {
                histogram.width()
            };
            for (index, count) in histogram.bins.iter().enumerate() {
                centers.append_value(histogram.start + (index as f64 + 0.5) * width);
                counts.append_value(*count);
            }
        }
        let batch = RecordBatch::try_new(
            Arc::clone(&EXPANDED),
            vec![Arc::new(centers.finish()), Arc::new(counts.finish())],
        )?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                Arc::clone(&EXPANDED),
                projection.cloned(),
            )?,
        )
    }
}

/// Registers the histogram functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::new_from_impl(HistogramAggregate {
        name: "make_histogram",
        make: true,
        signature: Signature::any(4, Volatility::Immutable),
    }));
    ctx.register_udaf(AggregateUDF::new_from_impl(HistogramAggregate {
        name: "sum_histograms",
        make: false,
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(histogram_udf(
        "quantile_from_histogram",
        Some(DataType::Float64),
        DataType::Float64,
        |h, q| ScalarValue::Float64(Some(h.quantile(q.unwrap_or(0.5)))),
    ));
    ctx.register_udf(histogram_udf(
        "variance_from_histogram",
        None,
        DataType::Float64,
        |h, _| ScalarValue::Float64(Some(h.variance())),
    ));
    ctx.register_udf(histogram_udf(
        "count_from_histogram",
        None,
        DataType::UInt64,
        |h, _| ScalarValue::UInt64(Some(h.count)),
    ));
    ctx.register_udf(histogram_udf(
        "sum_from_histogram",
        None,
        DataType::Float64,
        |h, _| ScalarValue::Float64(Some(h.sum)),
    ));
    ctx.register_udtf("expand_histogram", Arc::new(ExpandHistogram));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_their_bins_and_outliers_in_the_edge_bins() {
        let mut h = Histogram::new(0.0, 10.0, 5).unwrap();
        for value in [0.0, 1.9, 2.0, 9.99, 10.0, -3.0, 25.0, f64::NAN] {
            h.add(value);
        }
        // [0,2): 0, 1.9, -3, NaN; [2,4): 2; [8,10): 9.99, 10, 25.
        assert_eq!(h.bins, [4, 1, 0, 0, 3]);
        assert_eq!(h.count, 8);
        assert!(Histogram::new(0.0, 1.0, 0).is_err());
        assert!(Histogram::new(1.0, 0.0, 3).is_err());
        assert!(Histogram::new(0.0, f64::INFINITY, 3).is_err());
    }

    #[test]
    fn quantiles_interpolate_within_the_bin() {
        let mut h = Histogram::new(0.0, 100.0, 10).unwrap();
        for value in 0..100 {
            h.add(f64::from(value) + 0.5);
        }
        assert!((h.quantile(0.5) - 50.0).abs() < 1e-9);
        assert!((h.quantile(0.95) - 95.0).abs() < 1e-9);
        assert!((h.quantile(0.0) - 0.0).abs() < 1e-9);
        // Variance of 0.5..99.5 step 1: n(n+1)/12 with n=100 → 841.666...
        assert!((h.variance() - 841.666_666_666_666_7).abs() < 1e-6);
        let empty = Histogram::new(0.0, 1.0, 4).unwrap();
        assert_eq!(empty.quantile(0.5), 1.0);
        assert!(empty.variance().is_nan());
    }

    #[test]
    fn histograms_round_trip_through_arrow_and_merge() {
        let mut a = Histogram::new(0.0, 4.0, 4).unwrap();
        a.add(1.0);
        a.add(3.5);
        let mut b = Histogram::new(0.0, 4.0, 4).unwrap();
        b.add(1.5);
        let array = to_array(&[Some(a.clone()), None, Some(b.clone())]);
        assert_eq!(array.data_type(), &histogram_type());
        let back = from_array(&array).unwrap();
        assert_eq!(back, [Some(a.clone()), None, Some(b.clone())]);
        a.merge(&b).unwrap();
        assert_eq!(a.bins, [0, 2, 0, 1]);
        assert_eq!((a.count, a.min, a.max), (3, 1.0, 3.5));
        let other = Histogram::new(0.0, 5.0, 4).unwrap();
        assert!(a.merge(&other).is_err());
    }
}
