//! OTLP metrics → rows of `measures` (gauges and sums) and `histograms` (histograms,
//! exponential histograms, summaries).

use tarn_lakehouse::rows::{
    Exemplars, HistogramsBuilder, Identity, IdentityColumns, ListBuilder, MeasuresBuilder,
    MetricPointColumns, append_opt_str,
};
use tarn_lakehouse::schema::TableKind;
use tarn_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use tarn_proto::otlp::common::v1::{InstrumentationScope, KeyValue};
use tarn_proto::otlp::metrics::v1::exemplar::Value as ExemplarValue;
use tarn_proto::otlp::metrics::v1::exponential_histogram_data_point::Buckets;
use tarn_proto::otlp::metrics::v1::metric::Data;
use tarn_proto::otlp::metrics::v1::number_data_point::Value as NumberValue;
use tarn_proto::otlp::metrics::v1::{Exemplar, Metric};

use super::convert::{Signal, append_attributes, append_id, append_scope, resource_process};
use super::{Normalized, Rejections};

fn exemplar_problem(exemplars: &[Exemplar]) -> Option<&'static str> {
    for exemplar in exemplars {
        if !exemplar.trace_id.is_empty() && exemplar.trace_id.len() != 16 {
            return Some("exemplar trace_id must be empty or 16 bytes");
        }
        if !exemplar.span_id.is_empty() && exemplar.span_id.len() != 8 {
            return Some("exemplar span_id must be empty or 8 bytes");
        }
    }
    None
}

fn append_exemplars(list: &mut ListBuilder<Exemplars>, exemplars: &[Exemplar]) {
    for exemplar in exemplars {
        let items = &mut list.items;
        items
            .time_unix_nano
            .append_value(exemplar.time_unix_nano as i64);
        match exemplar.value {
            Some(ExemplarValue::AsDouble(value)) => {
                items.value.append_value(value);
                items.int_value.append_null();
            }
            Some(ExemplarValue::AsInt(value)) => {
                items.value.append_value(value as f64);
                items.int_value.append_value(value);
            }
            None => {
                items.value.append_null();
                items.int_value.append_null();
            }
        }
        append_id(&mut items.trace_id, &exemplar.trace_id);
        append_id(&mut items.span_id, &exemplar.span_id);
        append_attributes(
            &mut items.filtered_properties,
            &exemplar.filtered_attributes,
        );
    }
    list.finish_row();
}

/// What every point of one metric shares.
struct MetricContext<'a> {
    identity: &'a Identity,
    insert_time: i64,
    metric: &'a Metric,
    metric_type: &'static str,
    scope: Option<&'a InstrumentationScope>,
    scope_schema_url: &'a str,
}

impl MetricContext<'_> {
    fn append_point(
        &self,
        identity: &mut IdentityColumns,
        point: &mut MetricPointColumns,
        start_time_unix_nano: u64,
        time_unix_nano: u64,
    ) {
        identity.append(self.identity, self.insert_time);
        point.append_time(time_unix_nano as i64);
        point
            .start_time_unix_nano
            .append_value(start_time_unix_nano as i64);
        append_opt_str(
            &mut point.target,
            self.scope.map(|scope| scope.name.as_str()),
        );
        point.name.append_value(&self.metric.name);
        append_opt_str(&mut point.unit, Some(&self.metric.unit));
        append_opt_str(&mut point.description, Some(&self.metric.description));
        point.metric_type.append_value(self.metric_type);
    }
}

fn append_metadata(builder: &mut tarn_lakehouse::rows::AttributesBuilder, metadata: &[KeyValue]) {
    append_attributes(builder, metadata);
}

fn counts_as_i64(counts: &[u64]) -> Vec<i64> {
    // uint64 counts are stored bit for bit in Delta's signed long.
    counts.iter().map(|count| *count as i64).collect()
}

fn append_buckets(
    offset: &mut arrow::array::Int32Builder,
    counts: &mut tarn_lakehouse::rows::PrimitiveList<arrow::datatypes::Int64Type>,
    buckets: Option<&Buckets>,
) {
    match buckets {
        Some(buckets) => {
            offset.append_value(buckets.offset);
            counts.append(Some(&counts_as_i64(&buckets.bucket_counts)));
        }
        None => {
            offset.append_null();
            counts.append(None);
        }
    }
}

/// Normalizes a metrics export; invalid points are counted and left out.
pub fn normalize(request: &ExportMetricsServiceRequest, now_nanos: i64) -> Normalized {
    let insert_time = now_nanos.div_euclid(1_000);
    let mut measures = MeasuresBuilder::default();
    let mut histograms = HistogramsBuilder::default();
    let mut normalized = Normalized::default();
    let mut rejections = Rejections::default();
    for resource_metrics in &request.resource_metrics {
        let process = resource_process(
            resource_metrics.resource.as_ref(),
            &resource_metrics.schema_url,
            Signal::Metrics,
            now_nanos,
        );
        let kept_before = measures.len() + histograms.len();
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                let Some(data) = &metric.data else {
                    continue;
                };
                let context = |metric_type| MetricContext {
                    identity: &process.identity,
                    insert_time,
                    metric,
                    metric_type,
                    scope: scope_metrics.scope.as_ref(),
                    scope_schema_url: &scope_metrics.schema_url,
                };
                if metric.name.is_empty() {
                    let points = match data {
                        Data::Gauge(gauge) => gauge.data_points.len(),
                        Data::Sum(sum) => sum.data_points.len(),
                        Data::Histogram(histogram) => histogram.data_points.len(),
                        Data::ExponentialHistogram(histogram) => histogram.data_points.len(),
                        Data::Summary(summary) => summary.data_points.len(),
                    };
                    for _ in 0..points {
                        rejections.reject("metric name must not be empty");
                    }
                    continue;
                }
                match data {
                    Data::Gauge(gauge) => {
                        let context = context("gauge");
                        for point in &gauge.data_points {
                            if let Some(problem) = exemplar_problem(&point.exemplars) {
                                rejections.reject(problem);
                                continue;
                            }
                            append_number(&mut measures, &context, point, None, None);
                        }
                    }
                    Data::Sum(sum) => {
                        let context = context("sum");
                        for point in &sum.data_points {
                            if let Some(problem) = exemplar_problem(&point.exemplars) {
                                rejections.reject(problem);
                                continue;
                            }
                            append_number(
                                &mut measures,
                                &context,
                                point,
                                Some(sum.aggregation_temporality),
                                Some(sum.is_monotonic),
                            );
                        }
                    }
                    Data::Histogram(histogram) => {
                        let context = context("histogram");
                        for point in &histogram.data_points {
                            if !point.bucket_counts.is_empty()
                                && point.bucket_counts.len() != point.explicit_bounds.len() + 1
                            {
                                rejections.reject("histogram bucket_counts must have one more entry than explicit_bounds");
                                continue;
                            }
                            if let Some(problem) = exemplar_problem(&point.exemplars) {
                                rejections.reject(problem);
                                continue;
                            }
                            let rows = &mut histograms;
                            context.append_point(
                                &mut rows.identity,
                                &mut rows.point,
                                point.start_time_unix_nano,
                                point.time_unix_nano,
                            );
                            rows.count.append_value(point.count as i64);
                            rows.sum.append_option(point.sum);
                            rows.min.append_option(point.min);
                            rows.max.append_option(point.max);
                            rows.bucket_counts
                                .append(Some(&counts_as_i64(&point.bucket_counts)));
                            rows.explicit_bounds.append(Some(&point.explicit_bounds));
                            rows.scale.append_null();
                            rows.zero_count.append_null();
                            rows.zero_threshold.append_null();
                            append_buckets(
                                &mut rows.positive_offset,
                                &mut rows.positive_bucket_counts,
                                None,
                            );
                            append_buckets(
                                &mut rows.negative_offset,
                                &mut rows.negative_bucket_counts,
                                None,
                            );
                            rows.quantile_values.finish_row();
                            rows.aggregation_temporality
                                .append_value(histogram.aggregation_temporality);
                            rows.flags.append_value(i64::from(point.flags));
                            append_exemplars(&mut rows.exemplars, &point.exemplars);
                            append_attributes(&mut rows.properties, &point.attributes);
                            append_metadata(&mut rows.metric_metadata, &metric.metadata);
                            append_scope(&mut rows.scope, context.scope, context.scope_schema_url);
                        }
                    }
                    Data::ExponentialHistogram(histogram) => {
                        let context = context("exponential_histogram");
                        for point in &histogram.data_points {
                            if let Some(problem) = exemplar_problem(&point.exemplars) {
                                rejections.reject(problem);
                                continue;
                            }
                            let rows = &mut histograms;
                            context.append_point(
                                &mut rows.identity,
                                &mut rows.point,
                                point.start_time_unix_nano,
                                point.time_unix_nano,
                            );
                            rows.count.append_value(point.count as i64);
                            rows.sum.append_option(point.sum);
                            rows.min.append_option(point.min);
                            rows.max.append_option(point.max);
                            rows.bucket_counts.append(None);
                            rows.explicit_bounds.append(None);
                            rows.scale.append_value(point.scale);
                            rows.zero_count.append_value(point.zero_count as i64);
                            rows.zero_threshold.append_value(point.zero_threshold);
                            append_buckets(
                                &mut rows.positive_offset,
                                &mut rows.positive_bucket_counts,
                                point.positive.as_ref(),
                            );
                            append_buckets(
                                &mut rows.negative_offset,
                                &mut rows.negative_bucket_counts,
                                point.negative.as_ref(),
                            );
                            rows.quantile_values.finish_row();
                            rows.aggregation_temporality
                                .append_value(histogram.aggregation_temporality);
                            rows.flags.append_value(i64::from(point.flags));
                            append_exemplars(&mut rows.exemplars, &point.exemplars);
                            append_attributes(&mut rows.properties, &point.attributes);
                            append_metadata(&mut rows.metric_metadata, &metric.metadata);
                            append_scope(&mut rows.scope, context.scope, context.scope_schema_url);
                        }
                    }
                    Data::Summary(summary) => {
                        let context = context("summary");
                        for point in &summary.data_points {
                            let rows = &mut histograms;
                            context.append_point(
                                &mut rows.identity,
                                &mut rows.point,
                                point.start_time_unix_nano,
                                point.time_unix_nano,
                            );
                            rows.count.append_value(point.count as i64);
                            rows.sum.append_value(point.sum);
                            rows.min.append_null();
                            rows.max.append_null();
                            rows.bucket_counts.append(None);
                            rows.explicit_bounds.append(None);
                            rows.scale.append_null();
                            rows.zero_count.append_null();
                            rows.zero_threshold.append_null();
                            append_buckets(
                                &mut rows.positive_offset,
                                &mut rows.positive_bucket_counts,
                                None,
                            );
                            append_buckets(
                                &mut rows.negative_offset,
                                &mut rows.negative_bucket_counts,
                                None,
                            );
                            for quantile in &point.quantile_values {
                                rows.quantile_values
                                    .items
                                    .quantile
                                    .append_value(quantile.quantile);
                                rows.quantile_values
                                    .items
                                    .value
                                    .append_value(quantile.value);
                            }
                            rows.quantile_values.finish_row();
                            rows.aggregation_temporality.append_null();
                            rows.flags.append_value(i64::from(point.flags));
                            rows.exemplars.finish_row();
                            append_attributes(&mut rows.properties, &point.attributes);
                            append_metadata(&mut rows.metric_metadata, &metric.metadata);
                            append_scope(&mut rows.scope, context.scope, context.scope_schema_url);
                        }
                    }
                }
            }
        }
        if measures.len() + histograms.len() > kept_before {
            normalized.add_process(
                process,
                resource_metrics.resource.as_ref(),
                &resource_metrics.schema_url,
            );
        }
    }
    normalized.rejections = rejections;
    if !measures.is_empty() {
        normalized.push_batch(TableKind::Measures, measures.finish());
    }
    if !histograms.is_empty() {
        normalized.push_batch(TableKind::Histograms, histograms.finish());
    }
    normalized
}

fn append_number(
    rows: &mut MeasuresBuilder,
    context: &MetricContext<'_>,
    point: &tarn_proto::otlp::metrics::v1::NumberDataPoint,
    temporality: Option<i32>,
    monotonic: Option<bool>,
) {
    context.append_point(
        &mut rows.identity,
        &mut rows.point,
        point.start_time_unix_nano,
        point.time_unix_nano,
    );
    match point.value {
        Some(NumberValue::AsDouble(value)) => {
            rows.value.append_value(value);
            rows.int_value.append_null();
        }
        Some(NumberValue::AsInt(value)) => {
            rows.value.append_value(value as f64);
            rows.int_value.append_value(value);
        }
        None => {
            rows.value.append_null();
            rows.int_value.append_null();
        }
    }
    rows.aggregation_temporality.append_option(temporality);
    rows.is_monotonic.append_option(monotonic);
    rows.flags.append_value(i64::from(point.flags));
    append_exemplars(&mut rows.exemplars, &point.exemplars);
    append_attributes(&mut rows.properties, &point.attributes);
    append_metadata(&mut rows.metric_metadata, &context.metric.metadata);
    append_scope(&mut rows.scope, context.scope, context.scope_schema_url);
}
