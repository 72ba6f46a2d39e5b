"""Reads one Tarn Delta table with a third-party Delta reader and prints one JSON line.

usage: read.py TABLE_DIR READER [--where PREDICATE] [--key COL[,COL...]]
  TABLE_DIR  a table directory, e.g. <data-dir>/lake/spans (read with Tarn stopped)
  READER     deltalake  deltalake.DeltaTable(dir).to_pyarrow_table() (delta-rs); with --where,
                        deltalake.QueryBuilder (delta-rs' DataFusion provider)
             polars     polars.scan_delta(dir) (log replay by delta-rs, Parquet decoding by
                        polars); with --where, LazyFrame.sql
             duckdb     SELECT * FROM delta_scan('dir') with the `delta` extension of the
                        duckdb-extension-delta wheel, LOADed offline by path (delta-kernel-rs)
  --where    a SQL predicate (in each reader's SQL) to exercise file skipping by the
             statistics and partition values, e.g. "date = '2026-01-01'" or
             "time_unix_nano > 1767225600000000000"
  --key      sort columns; default by table: spans span_id, log_entries/measures/histograms
             time_unix_nano, processes process_id, streams stream_id (ties: by the whole row)

The JSON line: {"reader", "table", "num_rows", "columns", "types" (the Arrow types of what the
reader returned, without large_/view variants, list item names or nullability), "arrow_types"
(the same, verbatim), "native_types" (the reader's own type names), "rows" (lists, sorted)}; on
failure {"reader", "table", "error"} and exit code 1. Values: timestamps as ISO 8601 with
microseconds (`2026-01-01T00:00:00.123456+00:00`; no offset if the reader returned a naive
timestamp), dates `YYYY-MM-DD`, binary as hex, maps (and polars' list<struct<key, value>>
stand-in for maps) as lists of [key, value] pairs, structs as objects, NaN/±Infinity as strings.
"""

import argparse
import datetime
import json
import math
import os
import sys
from pathlib import Path

import pyarrow as pa

DEFAULT_KEYS = {
    "spans": ["span_id"],
    "log_entries": ["time_unix_nano"],
    "measures": ["time_unix_nano"],
    "histograms": ["time_unix_nano"],
    "processes": ["process_id"],
    "streams": ["stream_id"],
}


def read_deltalake(path, where):
    import deltalake

    dt = deltalake.DeltaTable(path)
    native = [str(f.type) for f in dt.schema().fields]
    if where is None:
        return dt.to_pyarrow_table(), native
    reader = deltalake.QueryBuilder().register("t", dt).execute(f"SELECT * FROM t WHERE {where}")
    return pa.table(reader.read_all()), native


def read_polars(path, where):
    import polars as pl

    lf = pl.scan_delta(path)
    if where is not None:
        lf = lf.sql(f"SELECT * FROM self WHERE {where}")
    df = lf.collect()
    return df.to_arrow(), [str(t) for t in df.dtypes]


def read_duckdb(path, where):
    import duckdb
    import duckdb_extension_delta

    extension = (Path(duckdb_extension_delta.__path__[0]) / "extensions"
                 / f"v{duckdb.__version__}" / "delta.duckdb_extension")
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false")
    con.execute("SET autoload_known_extensions=false")
    con.execute(f"LOAD '{extension}'")
    con.execute("SET TimeZone='UTC'")
    sql = f"SELECT * FROM delta_scan('{Path(path).resolve()}')"
    if where is not None:
        sql += f" WHERE {where}"
    native = [row[1] for row in con.execute(f"DESCRIBE {sql}").fetchall()]
    return con.sql(sql).to_arrow_table(), native


READERS = {"deltalake": read_deltalake, "polars": read_polars, "duckdb": read_duckdb}


def is_map_stand_in(t):
    """polars has no map type: it reads a map as list<struct<key, value>>."""
    return pa.types.is_struct(t) and [f.name for f in t] == ["key", "value"]


def to_json(t, v):
    """A JSON-able value, directed by its Arrow type."""
    if v is None:
        return None
    if pa.types.is_dictionary(t):
        return to_json(t.value_type, v)
    if pa.types.is_map(t):
        return [[to_json(t.key_type, k), to_json(t.item_type, x)] for k, x in v]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        if is_map_stand_in(t.value_type):
            kt, vt = t.value_type.field(0).type, t.value_type.field(1).type
            return [[to_json(kt, e["key"]), to_json(vt, e["value"])] for e in v]
        return [to_json(t.value_type, e) for e in v]
    if pa.types.is_struct(t):
        return {f.name: to_json(f.type, v[f.name]) for f in t}
    if isinstance(v, datetime.datetime):
        return v.isoformat(timespec="microseconds")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def sort_key(v):
    """Numbers by value, before everything else by its JSON text (nulls first)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, v, "")
    return (0 if v is None else 2, 0, json.dumps(v, sort_keys=True))


def logical(t):
    """An Arrow type without the physical variants (large_*, *_view), list item names and
    nullability, so the three readers' types compare equal when they mean the same."""
    if pa.types.is_dictionary(t):
        return logical(t.value_type)
    if pa.types.is_map(t):
        return f"map<{logical(t.key_type)}, {logical(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return f"list<{logical(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {logical(f.type)}" for f in t) + ">"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    return str(t)


def result(table, keys):
    columns = [[to_json(col.type, v) for v in col.to_pylist()] for col in table.columns]
    rows = [list(r) for r in zip(*columns)] if columns else []
    names = table.column_names
    key_idx = [names.index(k) for k in keys if k in names]
    rows.sort(key=lambda r: ([sort_key(r[i]) for i in key_idx], json.dumps(r, sort_keys=True)))
    return {"num_rows": table.num_rows, "columns": names,
            "types": [logical(t) for t in table.schema.types],
            "arrow_types": [str(t) for t in table.schema.types], "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table_dir")
    parser.add_argument("reader", choices=sorted(READERS))
    parser.add_argument("--where")
    parser.add_argument("--key")
    args = parser.parse_args()
    table_name = Path(args.table_dir).resolve().name
    keys = args.key.split(",") if args.key else DEFAULT_KEYS.get(table_name, [])
    head = {"reader": args.reader, "table": table_name}
    try:
        table, native = READERS[args.reader](args.table_dir, args.where)
        out = {**head, **result(table, keys), "native_types": native}
        code = 0
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        out, code = {**head, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}, 1
    sys.stdout.write(json.dumps(out, allow_nan=False) + "\n")
    sys.stdout.flush()
    # Leave without interpreter teardown: the readers' native thread pools (deltalake's
    # runtime, DuckDB, Arrow) have been seen to abort at exit ("terminate called without an
    # active exception") after a complete, correct answer.
    os._exit(code)


if __name__ == "__main__":
    main()
