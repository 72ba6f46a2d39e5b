//! Prepared-statement parameters, bound into the SQL text.
//!
//! Statement handles are SQL text (see the parent module), so binding parameters makes a new
//! handle: the statement with each placeholder replaced by a SQL literal of its value. The
//! client gets it back in `DoPutPreparedStatementResult` and runs it like any handle, on any
//! node. Placeholders are `$1`, `$2`, ... (PostgreSQL's) or `?` (numbered by position); the
//! first row of the parameter batch holds their values, column `k - 1` for `$k`.
//!
//! Only placeholder tokens are replaced: a `?` or `$1` inside a string literal, a quoted
//! identifier or a comment is left alone.

use arrow::array::RecordBatch;
use arrow::datatypes::TimeUnit;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// One placeholder in a statement: where it is (in chars) and which parameter it takes.
#[derive(Debug, PartialEq, Eq)]
struct Placeholder {
    start: usize,
    len: usize,
    /// Zero-based index of the parameter.
    index: usize,
}

/// The placeholders of `sql`, in order.
fn placeholders(sql: &str) -> Result<Vec<Placeholder>, String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| format!("cannot read the statement: {e}"))?;
    // Char offset of the start of each line (locations are 1-based line and column).
    let mut line_starts = vec![0usize];
    for (offset, ch) in sql.chars().enumerate() {
        if ch == '\n' {
            line_starts.push(offset + 1);
        }
    }
    let mut found = Vec::new();
    let mut positional = 0usize;
    for token in tokens {
        let Token::Placeholder(text) = &token.token else {
            continue;
        };
        let index = if text == "?" {
            positional += 1;
            positional - 1
        } else if let Some(number) = text.strip_prefix('$').or_else(|| text.strip_prefix('?')) {
            match number.parse::<usize>() {
                Ok(number) if number >= 1 => number - 1,
                _ => return Err(format!("placeholder {text} is not $1, $2, ... or ?")),
            }
        } else {
            return Err(format!("placeholder {text} is not $1, $2, ... or ?"));
        };
        let line = usize::try_from(token.span.start.line).unwrap_or(usize::MAX);
        let column = usize::try_from(token.span.start.column).unwrap_or(usize::MAX);
        let Some(line_start) = line.checked_sub(1).and_then(|line| line_starts.get(line)) else {
            return Err(format!("placeholder {text} has no position"));
        };
        found.push(Placeholder {
            start: line_start + column.saturating_sub(1),
            len: text.chars().count(),
            index,
        });
    }
    Ok(found)
}

/// `sql` with each placeholder replaced by `replacement(index)`.
fn splice(
    sql: &str,
    placeholders: &[Placeholder],
    mut replacement: impl FnMut(usize) -> Result<String, String>,
) -> Result<String, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut at = 0usize;
    for placeholder in placeholders {
        if placeholder.start < at || placeholder.start + placeholder.len > chars.len() {
            return Err("placeholders overlap".to_owned());
        }
        out.extend(&chars[at..placeholder.start]);
        out.push_str(&replacement(placeholder.index)?);
        at = placeholder.start + placeholder.len;
    }
    out.extend(&chars[at..]);
    Ok(out)
}

/// `sql` with `?` placeholders numbered (`$1`, `$2`, ...), the form DataFusion plans.
pub fn number_placeholders(sql: &str) -> Result<String, String> {
    let found = placeholders(sql)?;
    if found.is_empty() {
        return Ok(sql.to_owned());
    }
    splice(sql, &found, |index| Ok(format!("${}", index + 1)))
}

/// `sql` with every placeholder replaced by the literal of its value in row 0 of `batch`.
pub fn bind(sql: &str, batch: &RecordBatch) -> Result<String, String> {
    let found = placeholders(sql)?;
    if found.is_empty() {
        return Ok(sql.to_owned());
    }
    if batch.num_rows() != 1 {
        return Err(format!(
            "a query takes one row of parameters, not {}",
            batch.num_rows()
        ));
    }
    splice(sql, &found, |index| {
        let column = batch.columns().get(index).ok_or_else(|| {
            format!(
                "parameter ${} is missing: {} were given",
                index + 1,
                batch.num_columns()
            )
        })?;
        let value = ScalarValue::try_from_array(column.as_ref(), 0)
            .map_err(|e| format!("parameter ${}: {e}", index + 1))?;
        literal(&value).map_err(|e| format!("parameter ${}: {e}", index + 1))
    })
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn float(value: f64) -> String {
    if value.is_finite() {
        format!("CAST({value:?} AS DOUBLE)")
    } else if value.is_nan() {
        "CAST('NaN' AS DOUBLE)".to_owned()
    } else if value > 0.0 {
        "CAST('inf' AS DOUBLE)".to_owned()
    } else {
        "CAST('-inf' AS DOUBLE)".to_owned()
    }
}

fn nanos(value: i64, unit: &TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => value.checked_mul(1_000_000_000),
        TimeUnit::Millisecond => value.checked_mul(1_000_000),
        TimeUnit::Microsecond => value.checked_mul(1_000),
        TimeUnit::Nanosecond => Some(value),
    }
}

/// A timestamp literal: the instant in UTC, to the nanosecond.
fn timestamp(value: i64, unit: &TimeUnit) -> Result<String, String> {
    let nanos = nanos(value, unit).ok_or_else(|| format!("timestamp {value} is out of range"))?;
    let instant = chrono::DateTime::from_timestamp_nanos(nanos);
    Ok(format!(
        "TIMESTAMP '{}'",
        instant.format("%Y-%m-%dT%H:%M:%S%.9f")
    ))
}

/// A SQL literal (of DataFusion's dialect) of `value`.
fn literal(value: &ScalarValue) -> Result<String, String> {
    if value.is_null() {
        return Ok("NULL".to_owned());
    }
    let text = match value {
        ScalarValue::Boolean(Some(value)) => value.to_string().to_uppercase(),
        ScalarValue::Int8(Some(value)) => format!("CAST({value} AS TINYINT)"),
        ScalarValue::Int16(Some(value)) => format!("CAST({value} AS SMALLINT)"),
        ScalarValue::Int32(Some(value)) => format!("CAST({value} AS INT)"),
        ScalarValue::Int64(Some(value)) => format!("CAST({value} AS BIGINT)"),
        ScalarValue::UInt8(Some(value)) => format!("CAST({value} AS TINYINT UNSIGNED)"),
        ScalarValue::UInt16(Some(value)) => format!("CAST({value} AS SMALLINT UNSIGNED)"),
        ScalarValue::UInt32(Some(value)) => format!("CAST({value} AS INT UNSIGNED)"),
        ScalarValue::UInt64(Some(value)) => format!("CAST({value} AS BIGINT UNSIGNED)"),
        ScalarValue::Float32(Some(value)) => float(f64::from(*value)),
        ScalarValue::Float64(Some(value)) => float(*value),
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => quote(text),
        ScalarValue::Binary(Some(bytes))
        | ScalarValue::LargeBinary(Some(bytes))
        | ScalarValue::BinaryView(Some(bytes))
        | ScalarValue::FixedSizeBinary(_, Some(bytes)) => {
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("decode('{hex}', 'hex')")
        }
        ScalarValue::Date32(Some(days)) => {
            let date = chrono::DateTime::from_timestamp(i64::from(*days) * 86_400, 0)
                .ok_or_else(|| format!("date {days} is out of range"))?;
            format!("DATE '{}'", date.format("%Y-%m-%d"))
        }
        ScalarValue::TimestampSecond(Some(value), _) => timestamp(*value, &TimeUnit::Second)?,
        ScalarValue::TimestampMillisecond(Some(value), _) => {
            timestamp(*value, &TimeUnit::Millisecond)?
        }
        ScalarValue::TimestampMicrosecond(Some(value), _) => {
            timestamp(*value, &TimeUnit::Microsecond)?
        }
        ScalarValue::TimestampNanosecond(Some(value), _) => {
            timestamp(*value, &TimeUnit::Nanosecond)?
        }
        other => {
            return Err(format!(
                "values of type {} are not supported",
                other.data_type()
            ));
        }
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
        TimestampNanosecondArray,
    };

    use super::*;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let named = columns
            .into_iter()
            .enumerate()
            .map(|(index, column)| (format!("p{index}"), column));
        RecordBatch::try_from_iter(named).expect("columns of one row")
    }

    #[test]
    fn question_marks_are_numbered_outside_strings_and_comments() {
        let sql = "SELECT '?', \"?\" FROM t -- ?\nWHERE a = ? AND b = ?";
        assert_eq!(
            number_placeholders(sql).expect("valid"),
            "SELECT '?', \"?\" FROM t -- ?\nWHERE a = $1 AND b = $2"
        );
        assert_eq!(number_placeholders("SELECT 1").expect("valid"), "SELECT 1");
    }

    #[test]
    fn values_become_literals() {
        let params = batch(vec![
            Arc::new(StringArray::from(vec!["it's"])),
            Arc::new(Int64Array::from(vec![-42])),
            Arc::new(Float64Array::from(vec![0.5])),
            Arc::new(BooleanArray::from(vec![true])),
            Arc::new(StringArray::from(vec![None::<&str>])),
            Arc::new(TimestampNanosecondArray::from(vec![
                1_700_000_000_123_456_789,
            ])),
            Arc::new(BinaryArray::from(vec![&[0xab_u8, 0x01][..]])),
        ]);
        let bound = bind(
            "SELECT * FROM spans WHERE name = $1 AND n = $2 AND x = $3 AND ok = $4 AND \
             s IS $5 AND t >= $6 AND id = $7 AND note = '$1'",
            &params,
        )
        .expect("bindable");
        assert_eq!(
            bound,
            "SELECT * FROM spans WHERE name = 'it''s' AND n = CAST(-42 AS BIGINT) AND \
             x = CAST(0.5 AS DOUBLE) AND ok = TRUE AND s IS NULL AND \
             t >= TIMESTAMP '2023-11-14T22:13:20.123456789' AND id = decode('ab01', 'hex') \
             AND note = '$1'"
        );
    }

    #[test]
    fn a_missing_parameter_or_many_rows_is_an_error() {
        let one = batch(vec![Arc::new(Int64Array::from(vec![1]))]);
        let error = bind("SELECT $2", &one).expect_err("$2 is missing");
        assert!(error.contains("$2 is missing"), "{error}");
        let two = batch(vec![Arc::new(Int64Array::from(vec![1, 2]))]);
        let error = bind("SELECT $1", &two).expect_err("two rows");
        assert!(error.contains("one row"), "{error}");
        let error = bind("SELECT $0", &one).expect_err("$0");
        assert!(error.contains("$0"), "{error}");
    }

    #[test]
    fn multibyte_text_before_a_placeholder_keeps_positions() {
        let one = batch(vec![Arc::new(StringArray::from(vec!["é"]))]);
        assert_eq!(
            bind("SELECT 'ünïcode',\n  $1", &one).expect("bindable"),
            "SELECT 'ünïcode',\n  'é'"
        );
    }
}
