"""Shared by the FlightSQL client scripts: turns results into one JSON line.

Values are made JSON-able the same way for every client, so a test can compare them:
timestamps as ISO 8601 strings with microseconds (`2026-01-01T00:00:00.123456+00:00`;
nanoseconds appended when a value has them), dates as `YYYY-MM-DD`, binary as lowercase hex,
maps as lists of `[key, value]` pairs, structs as objects, non-finite floats as the strings
`NaN`, `Infinity`, `-Infinity`, and pandas/numpy missing values as null.
"""

import datetime
import decimal
import json
import math
import sys


def jsonable(value):
    """A JSON-able copy of a value from pyarrow's to_pylist() or a pandas cell."""
    if value is None:
        return None
    # pandas/numpy first (optional imports: only the micromegas venv has pandas).
    if type(value).__module__.startswith("pandas"):
        import pandas as pd

        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            text = value.to_pydatetime(warn=False).isoformat(timespec="microseconds")
            return _with_nanos(text, value.nanosecond)
        if isinstance(value, pd.Timedelta):
            return int(value.value)
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            return jsonable(value.tolist())
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value // datetime.timedelta(microseconds=1) * 1000
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # a map arrives as a list of (key, value) tuples
        return [jsonable(v) for v in value]
    return repr(value)


def _with_nanos(text, nanos):
    if not nanos:
        return text
    # "....ffffff+00:00" -> "....ffffffNNN+00:00"
    cut = 26  # len("YYYY-MM-DDTHH:MM:SS.ffffff")
    return f"{text[:cut]}{nanos:03d}{text[cut:]}"


def arrow_result(table):
    """columns, Arrow types, row count and rows (as lists) of a pyarrow Table."""
    columns = [c.to_pylist() for c in table.columns]
    return {
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "num_rows": table.num_rows,
        "rows": [[jsonable(col[i]) for col in columns] for i in range(table.num_rows)],
    }


def error_text(exc):
    """The exception's type and message on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def emit(obj, code=0):
    """Prints one JSON line and exits with `code`."""
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()
    sys.exit(code)
