"""Queries Tarn with the `micromegas` Python client (0.32.0) and prints one JSON line.

usage: micromegas_client.py URI CALL SQL [--begin ISO] [--end ISO] [--cli-format json|csv]
  URI   grpc://127.0.0.1:PORT
  CALL  query         connect(uri).query(sql, begin, end): pandas DataFrame
        query_arrow   connect(uri).query_arrow(sql, begin, end): pyarrow Table
        query_stream  connect(uri).query_stream(sql, begin, end): RecordBatches
        prepare       prepare_statement(sql) (DoAction CreatePreparedStatement), then
                      prepared_statement_stream(stmt), which re-runs the handle as SQL
        cli           the `micromegas-query` CLI with MICROMEGAS_ANALYTICS_URI=URI and
                      --format json (or --cli-format csv), plus `--begin VALUE` (e.g. 1h)
                      or else `--all`
  --begin/--end  timezone-aware ISO 8601 datetimes (e.g. 2026-01-01T00:00:00+00:00), sent by
                 the client as the query_range_begin/query_range_end headers (`cli`: passed
                 verbatim, so relative values like 1h work)

The JSON line: {"client", "call", "columns", "types", "num_rows", "rows"} (+ "batches" for
query_stream, "handle" and "schema_types" for prepare); on failure {"client", "call",
"error"} and exit code 1. Types are pandas dtypes for `query`, Arrow types otherwise, and
null for `cli`. `query` rows are what pandas makes of the Arrow data (top-level NaN shown
as null; a nullable int column becomes float64; a map is a list of (key, struct) pairs
whose nullable ints are floats); `cli` rows are the CLI's JSON (pandas' to_json:
timestamps and dates as epoch milliseconds; an empty result is printed as "no data"; it
fails with "OverflowError: Unterminated UTF-8 sequence" on binary values that are not UTF-8:
use --cli-format csv there, whose values are all strings).

Each run is its own process: micromegas and flightsql-dbapi register clashing protobufs.
"""

import argparse
import csv
import datetime
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from common import arrow_result, emit, error_text, jsonable


def parse_time(text):
    if text is None:
        return None
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise SystemExit(f"{text}: a timezone is required")
    return value


def run(args):
    if args.call == "cli":
        return run_cli(args)
    import micromegas

    client = micromegas.connect(args.uri)
    begin, end = parse_time(args.begin), parse_time(args.end)
    if args.call == "query":
        df = client.query(args.sql, begin, end)
        # pandas marks a missing value of a nullable int or float column with NaN: null here.
        rows = [[None if isinstance(v, float) and math.isnan(v) else v for v in row]
                for row in df.to_dict("split")["data"]]
        return {
            "columns": [str(c) for c in df.columns],
            "types": [str(t) for t in df.dtypes],
            "num_rows": len(df),
            "rows": jsonable(rows),
        }
    if args.call == "query_arrow":
        return arrow_result(client.query_arrow(args.sql, begin, end))
    if args.call == "query_stream":
        batches = list(client.query_stream(args.sql, begin, end))
        if batches:
            table = pa.Table.from_batches(batches)
        else:  # query_stream yields no schema when there is no batch
            table = pa.table({})
        return {**arrow_result(table), "batches": len(batches)}
    if args.call == "prepare":
        stmt = client.prepare_statement(args.sql)
        batches = list(client.prepared_statement_stream(stmt))
        table = pa.Table.from_batches(batches, stmt.dataset_schema)
        return {
            **arrow_result(table),
            "handle": stmt.query,
            "schema_types": [str(t) for t in stmt.dataset_schema.types],
        }
    raise SystemExit(f"unknown call {args.call}")


def run_cli(args):
    cli = Path(sys.executable).parent / "micromegas-query"
    range_args = ["--begin", args.begin] if args.begin else ["--all"]
    if args.end:
        range_args += ["--end", args.end]
    env = {**os.environ, "MICROMEGAS_ANALYTICS_URI": args.uri}
    proc = subprocess.run(
        [str(cli), *range_args, "--format", args.cli_format, args.sql],
        env=env, capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"micromegas-query exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    out = proc.stdout.strip()
    if out in ("", "no data"):  # "no data": an empty result
        records = []
    elif args.cli_format == "csv":
        records = list(csv.DictReader(io.StringIO(out)))
    else:
        records = json.loads(out)
    columns = list(records[0]) if records else []
    return {
        "columns": columns,
        "types": None,
        "num_rows": len(records),
        "rows": [[r.get(c) for c in columns] for r in records],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("call", choices=["query", "query_arrow", "query_stream", "prepare", "cli"])
    parser.add_argument("sql")
    parser.add_argument("--begin")
    parser.add_argument("--end")
    parser.add_argument("--cli-format", choices=["json", "csv"], default="json")
    args = parser.parse_args()
    head = {"client": "micromegas", "call": args.call}
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        emit({**head, "error": error_text(exc)}, 1)
    emit({**head, **result})


if __name__ == "__main__":
    main()
