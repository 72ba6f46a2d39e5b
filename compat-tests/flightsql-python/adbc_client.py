"""Queries Tarn with the ADBC Flight SQL driver (1.13.0, DB-API) and prints one JSON line.

usage: adbc_client.py URI CALL [ARG] [--param JSON]... [--begin VALUE] [--end VALUE]
  URI   grpc://127.0.0.1:PORT
  CALL  query SQL             cursor.execute(SQL) + fetch_arrow_table()
                              (CreatePreparedStatement, GetFlightInfo(CommandPreparedStatementQuery),
                              DoGet, ClosePreparedStatement)
        fetchall SQL          cursor.execute(SQL) + fetchall() (DB-API rows)
        params SQL            cursor.execute(SQL, [params]) with each --param (a JSON value)
                              bound positionally (DoPut(CommandPreparedStatementQuery) first)
        get_info              connection.adbc_get_info() (GetSqlInfo)
        get_objects [DEPTH]   connection.adbc_get_objects(depth=DEPTH).read_all()
                              (DEPTH: catalogs | db_schemas | tables | all; default all)
        get_table_types       connection.adbc_get_table_types()
        get_table_schema TAB  connection.adbc_get_table_schema(TAB)
        survey                each call once (SQL `SELECT 1 AS one`, params `SELECT ? AS p`
                              with 42, table `spans`), one entry each: {"ok": true,
                              "num_rows": N} or {"ok": false, "error": "..."}
  --begin/--end  sent verbatim as the query_range_begin/query_range_end headers on every
                 call (db_kwargs adbc.flight.sql.rpc.call_header.*)
  --tls-root-certs FILE  PEM certificates to trust, for a grpc+tls:// URI
                 (adbc.flight.sql.client_option.tls_root_certs)

The JSON line: {"client", "call", "columns", "types", "num_rows", "rows", "warnings"}
(get_info: rows are [info_name, value] pairs); on failure {"client", "call", "error",
"warnings"} and exit code 1. The connection uses autocommit=True (without it the driver
warns "Cannot disable autocommit").
"""

import argparse
import json
import warnings

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi

from common import arrow_result, emit, error_text, jsonable

HEADER = adbc_driver_flightsql.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value


def connect(uri, begin, end, tls_root_certs=None):
    db_kwargs = {HEADER + "query_range_" + k: v for k, v in (("begin", begin), ("end", end)) if v}
    if tls_root_certs:
        with open(tls_root_certs, encoding="ascii") as pem:
            db_kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = pem.read()
    return adbc_driver_flightsql.dbapi.connect(uri, db_kwargs=db_kwargs, autocommit=True)


def call(conn, name, arg=None, params=()):
    if name in ("query", "params"):
        with conn.cursor() as cur:
            cur.execute(arg, list(params) if name == "params" else None)
            return arrow_result(cur.fetch_arrow_table())
    if name == "fetchall":
        with conn.cursor() as cur:
            cur.execute(arg)
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description]
            types = [str(d[1]) for d in cur.description]
        return {"columns": columns, "types": types, "num_rows": len(rows), "rows": jsonable(rows)}
    if name == "get_info":
        info = conn.adbc_get_info()
        rows = [[str(k), jsonable(v)] for k, v in info.items()]
        return {"columns": ["info_name", "info_value"], "types": None, "num_rows": len(rows), "rows": rows}
    if name == "get_objects":
        return arrow_result(conn.adbc_get_objects(depth=arg or "all").read_all())
    if name == "get_table_types":
        types = conn.adbc_get_table_types()
        return {"columns": ["table_type"], "types": ["string"], "num_rows": len(types),
                "rows": [[t] for t in types]}
    if name == "get_table_schema":
        schema = conn.adbc_get_table_schema(arg)
        return {"columns": schema.names, "types": [str(t) for t in schema.types], "num_rows": 0, "rows": []}
    raise SystemExit(f"unknown call {name}")


def survey(conn):
    calls = [("query", "SELECT 1 AS one", ()), ("fetchall", "SELECT 1 AS one", ()),
             ("params", "SELECT ? AS p", (42,)), ("get_info", None, ()),
             ("get_objects", "catalogs", ()), ("get_objects", "db_schemas", ()),
             ("get_objects", "tables", ()), ("get_objects", "all", ()),
             ("get_table_types", None, ()), ("get_table_schema", "spans", ())]
    report = {}
    for name, arg, params in calls:
        key = name if name != "get_objects" else f"get_objects {arg}"
        try:
            report[key] = {"ok": True, "num_rows": call(conn, name, arg, params)["num_rows"]}
        except Exception as exc:  # noqa: BLE001 - reported
            report[key] = {"ok": False, "error": error_text(exc)}
    return {"calls": report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("call", choices=["query", "fetchall", "params", "get_info", "get_objects",
                                         "get_table_types", "get_table_schema", "survey"])
    parser.add_argument("arg", nargs="?")
    parser.add_argument("--param", action="append", default=[], type=json.loads)
    parser.add_argument("--begin")
    parser.add_argument("--end")
    parser.add_argument("--tls-root-certs")
    args = parser.parse_args()
    head = {"client": "adbc_driver_flightsql", "call": args.call}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with connect(args.uri, args.begin, args.end, args.tls_root_certs) as conn:
                if args.call == "survey":
                    result = survey(conn)
                else:
                    result = call(conn, args.call, args.arg, args.param)
            code = 0
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            result, code = {"error": error_text(exc)}, 1
    result["warnings"] = [str(w.message) for w in caught]
    emit({**head, **result}, code)


if __name__ == "__main__":
    main()
