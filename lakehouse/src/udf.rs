//! SQL functions over attribute maps.
//!
//! - `property_get(map, key)`: the value as text, whatever its type (Micromegas' name and
//!   behaviour: queries and dashboards written for it keep working);
//! - `attr_str`, `attr_int`, `attr_double`, `attr_bool`: the typed value, NULL when the key
//!   is missing or holds another type (so numeric comparisons stay numeric);
//! - `properties_length(map)`: the number of entries;
//! - `properties_to_json(map)`: the map as a JSON object of display strings.
//!
//! Plain SQL works too: `properties['http.response.status_code']['int'] = 500`.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, MapArray,
    StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::common::cast::as_map_array;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The member of an attribute value a function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Read {
    /// Any member, as text.
    Display,
    Str,
    Int,
    Double,
    Bool,
}

/// `name(map, key)`: reads the value of `key` in each row's map.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AttributeGet {
    name: &'static str,
    read: Read,
    signature: Signature,
}

impl AttributeGet {
    fn new(name: &'static str, read: Read) -> AttributeGet {
        AttributeGet {
            name,
            read,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn key_argument(args: &ScalarFunctionArgs) -> Result<Option<String>> {
    match &args.args[1] {
        ColumnarValue::Scalar(scalar) => Ok(scalar.try_as_str().flatten().map(str::to_owned)),
        ColumnarValue::Array(_) => Err(DataFusionError::Execution(
            "the key of an attribute function must be a constant".into(),
        )),
    }
}

/// The index in `map`'s entries of `key` for each row (`None` when absent).
fn lookup(map: &MapArray, key: &str) -> Result<Vec<Option<usize>>> {
    let keys = arrow::compute::cast(map.keys(), &DataType::Utf8)?;
    let keys = keys.as_string::<i32>();
    let offsets = map.value_offsets();
    let mut found = Vec::with_capacity(map.len());
    for row in 0..map.len() {
        if map.is_null(row) {
            found.push(None);
            continue;
        }
        let start = usize::try_from(offsets[row]).unwrap_or(0);
        let end = usize::try_from(offsets[row + 1]).unwrap_or(start);
        found.push((start..end).find(|index| keys.value(*index) == key));
    }
    Ok(found)
}

fn member<'a>(values: &'a StructArray, name: &str) -> Result<&'a ArrayRef> {
    values.column_by_name(name).ok_or_else(|| {
        DataFusionError::Execution(format!("attribute values have no member {name}"))
    })
}

/// The text of one typed value, as `property_get` shows it.
fn display(values: &StructArray, index: usize) -> Result<Option<String>> {
    if values.is_null(index) {
        return Ok(None);
    }
    let strings = arrow::compute::cast(member(values, "str")?, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    if strings.is_valid(index) {
        return Ok(Some(strings.value(index).to_owned()));
    }
    let ints = member(values, "int")?.as_primitive::<Int64Type>();
    if ints.is_valid(index) {
        return Ok(Some(ints.value(index).to_string()));
    }
    let doubles = member(values, "double")?.as_primitive::<Float64Type>();
    if doubles.is_valid(index) {
        return Ok(Some(doubles.value(index).to_string()));
    }
    let bools = member(values, "bool")?.as_boolean();
    if bools.is_valid(index) {
        return Ok(Some(bools.value(index).to_string()));
    }
    let bytes = arrow::compute::cast(member(values, "bytes")?, &DataType::Binary)?;
    let bytes = bytes.as_binary::<i32>();
    if bytes.is_valid(index) {
        return Ok(Some(BASE64.encode(bytes.value(index))));
    }
    let json = arrow::compute::cast(member(values, "json")?, &DataType::Utf8)?;
    let json = json.as_string::<i32>();
    if json.is_valid(index) {
        return Ok(Some(json.value(index).to_owned()));
    }
    Ok(None)
}

impl ScalarUDFImpl for AttributeGet {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types.first(), Some(DataType::Map(_, _))) {
            return Err(DataFusionError::Plan(format!(
                "{}(map, key) takes an attribute map, not {:?}",
                self.name,
                arg_types.first()
            )));
        }
        Ok(match self.read {
            Read::Display | Read::Str => DataType::Utf8,
            Read::Int => DataType::Int64,
            Read::Double => DataType::Float64,
            Read::Bool => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let key = key_argument(&args)?;
        let maps = args.args[0].to_array(rows)?;
        let map = as_map_array(&maps)?;
        let found = match &key {
            Some(key) => lookup(map, key)?,
            None => vec![None; map.len()],
        };
        let values = map.values().as_struct();
        let array: ArrayRef = match self.read {
            Read::Display => {
                let mut out = StringBuilder::new();
                for index in &found {
                    match index {
                        Some(index) => out.append_option(display(values, *index)?),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            Read::Str => {
                let strings = arrow::compute::cast(member(values, "str")?, &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let mut out = StringBuilder::new();
                for index in &found {
                    out.append_option(
                        index
                            .filter(|i| strings.is_valid(*i))
                            .map(|i| strings.value(i)),
                    );
                }
                Arc::new(out.finish())
            }
            Read::Int => {
                let ints = member(values, "int")?.as_primitive::<Int64Type>();
                let mut out = Int64Builder::new();
                for index in &found {
                    out.append_option(index.filter(|i| ints.is_valid(*i)).map(|i| ints.value(i)));
                }
                Arc::new(out.finish())
            }
            Read::Double => {
                let doubles = member(values, "double")?.as_primitive::<Float64Type>();
                let mut out = Float64Builder::new();
                for index in &found {
                    out.append_option(
                        index
                            .filter(|i| doubles.is_valid(*i))
                            .map(|i| doubles.value(i)),
                    );
                }
                Arc::new(out.finish())
            }
            Read::Bool => {
                let bools = member(values, "bool")?.as_boolean();
                let mut out = BooleanBuilder::new();
                for index in &found {
                    out.append_option(index.filter(|i| bools.is_valid(*i)).map(|i| bools.value(i)));
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}

/// `properties_length(map)` and `properties_to_json(map)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WholeMap {
    name: &'static str,
    json: bool,
    signature: Signature,
}

impl ScalarUDFImpl for WholeMap {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types.first(), Some(DataType::Map(_, _))) {
            return Err(DataFusionError::Plan(format!(
                "{}(map) takes an attribute map",
                self.name
            )));
        }
        Ok(if self.json {
            DataType::Utf8
        } else {
            DataType::Int32
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let maps = args.args[0].to_array(args.number_rows)?;
        let map = as_map_array(&maps)?;
        if !self.json {
            let mut out = Int32Builder::new();
            for row in 0..map.len() {
                if map.is_null(row) {
                    out.append_null();
                } else {
                    out.append_value(map.value_length(row));
                }
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let keys = arrow::compute::cast(map.keys(), &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let values = map.values().as_struct();
        let offsets = map.value_offsets();
        let mut out = StringBuilder::new();
        for row in 0..map.len() {
            if map.is_null(row) {
                out.append_null();
                continue;
            }
            let mut text = String::from("{");
            let start = usize::try_from(offsets[row]).unwrap_or(0);
            let end = usize::try_from(offsets[row + 1]).unwrap_or(start);
            for index in start..end {
                if index > start {
                    text.push(',');
                }
                let key = serde_json::to_string(keys.value(index)).unwrap_or_default();
                let value = match display(values, index)? {
                    Some(value) => serde_json::to_string(&value).unwrap_or_default(),
                    None => "null".to_owned(),
                };
                let _infallible = write!(text, "{key}:{value}");
            }
            text.push('}');
            out.append_value(text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Registers the attribute functions in a session.
pub fn register(ctx: &SessionContext) {
    for (name, read) in [
        ("property_get", Read::Display),
        ("attr", Read::Display),
        ("attr_str", Read::Str),
        ("attr_int", Read::Int),
        ("attr_double", Read::Double),
        ("attr_bool", Read::Bool),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(AttributeGet::new(name, read)));
    }
    for (name, json) in [("properties_length", false), ("properties_to_json", true)] {
        ctx.register_udf(ScalarUDF::new_from_impl(WholeMap {
            name,
            json,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
}
