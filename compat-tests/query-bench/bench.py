#!/usr/bin/env python3
"""Query benchmark: Tarn over FlightSQL (ADBC) against DuckDB (delta_scan) on the same Delta tables.

Steps (see README.md for the commands):
  1. start `tarn serve` on a fresh data directory (free ports), or on an existing one (--reuse);
  2. generate data with `tarn load --shape bench` (or the built-in OTLP/JSON generator while
     that does not exist), wait until every record is committed, stop the server, run
     `tarn maintain` and record each table's files and bytes before and after, restart;
  3. run the five canonical queries side by side: Tarn end to end through FlightSQL with the
     ADBC driver (whole result fetched to Arrow) and DuckDB in process (the delta extension
     loaded offline by path, `delta_scan` on the table directories). Per query: one warm-up
     per engine that also compares the two results, then R rounds alternating the engine
     order; median ms, Tarn/DuckDB, CPU-seconds (the tarn server's user+sys from
     /proc/<pid>/stat around each Tarn query, this process's getrusage around each DuckDB query);
  4. print a markdown table for docs/benchmarks.md (also written to <work dir>/report.md, with
     everything measured in report.json).

The tarn server (and any `tarn load`) is stopped on exit, on errors and on Ctrl-C.
"""

import argparse
import ctypes
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import queue
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi
import duckdb
import duckdb_extension_delta
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DEFAULT_BINARY = "/root/.cache/tarn/target/release/tarn"
TABLES = ("spans", "log_entries", "measures")  # the tables generated and benchmarked
SIGNAL_TABLE = {"traces": "spans", "logs": "log_entries", "metrics": "measures"}
TICK_SECONDS = 1.0 / os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A failure with a message meant for the user (no traceback)."""


def log(message):
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Child processes: killed with us (PR_SET_PDEATHSIG), and explicitly on exit.

_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a SIGKILLed harness takes tarn with it


def run_child(cmd, timeout, what):
    """Runs a command to completion; its output is returned. Killed on timeout or Ctrl-C."""
    log(f"{what}: {' '.join(map(str, cmd))}")
    try:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s (killed); "
                         f"output so far:\n{exc.stdout or ''}{exc.stderr or ''}") from None
    if done.returncode != 0:
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


class Server:
    """One `tarn serve` process on a data directory, every port chosen by the OS."""

    def __init__(self, binary, data_dir, log_path, flush_secs, extra_args, ready_timeout):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.flush_secs, self.extra_args, self.ready_timeout = flush_secs, extra_args, ready_timeout
        self.proc = None
        self.addr = {}

    def start(self):
        cmd = [self.binary, "serve", "--data-dir", self.data_dir,
               "--otlp-grpc-port", "0", "--otlp-http-port", "0", "--native-port", "0",
               "--flightsql-port", "0", "--flush-interval-secs", str(self.flush_secs),
               "--maintenance-interval-secs", "0", *self.extra_args]
        log(f"starting: {' '.join(map(str, cmd))}")
        logfile = open(self.log_path, "a")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=logfile,
                                     text=True, preexec_fn=_die_with_parent)
        lines = queue.Queue()

        def pump():  # stdout to the log file, the first lines also to us
            for line in self.proc.stdout:
                logfile.write(line)
                logfile.flush()
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise BenchError(f"tarn serve printed no 'tarn ready' line within "
                                 f"{self.ready_timeout:.0f} s; see {self.log_path}")
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None:
                    line = None
                else:
                    continue
            if line is None:
                code = self.proc.wait()
                raise BenchError(f"tarn serve exited (code {code}) before it was ready; last log "
                                 f"lines:\n{tail(self.log_path)}")
            if line.startswith("tarn ready "):
                self.addr = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
                log(f"ready (pid {self.proc.pid}): {line.strip()}")
                return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def flight_uri(self):
        return f"grpc://{self.addr['flightsql']}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace=60.0):
        """SIGTERM (the gateway commits what it holds), SIGKILL after `grace` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        log(f"stopping tarn serve (pid {self.proc.pid})")
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"tarn serve did not stop within {grace:.0f} s: SIGKILL")
            self.proc.kill()
            self.proc.wait()


def tail(path, n=15):
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return "(no log)"


def cpu_ticks(pid):
    """user + system clock ticks of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# Data generation. `generate` returns {table: records sent}; each generator is one function.

def tarn_load_help(binary):
    return subprocess.run([binary, "load", "--help"], capture_output=True, text=True).stdout


def gen_tarn_shape(args, server):
    """`tarn load --shape bench`: exactly --total records per signal, deterministic."""
    sent = {}
    for sig, total in (("traces", args.spans), ("logs", args.logs), ("metrics", args.metrics)):
        if total <= 0:
            continue
        out = run_child([args.binary, "load", "--target", server.addr["otlp_grpc"], "--signal", sig,
                         "--shape", "bench", "--total", total, "--seed", args.seed,
                         "--days", args.days, "--drain-secs", "0"], args.gen_timeout, f"tarn load ({sig})")
        log(f"tarn load ({sig}) output:\n{out.strip()}")
        sent[SIGNAL_TABLE[sig]] = total
    return sent


def gen_tarn_legacy(args, server):
    """The duration-based `tarn load` (before --shape): --legacy-secs of spans, then of logs.
    Its data is not shaped like the anchor (all times are "now", no errors, no metrics)."""
    sent = {}
    for sig in ("traces", "logs"):
        out = run_child([args.binary, "load", "--target", server.addr["otlp_grpc"], "--signal", sig,
                         "--warmup-secs", "0", "--drain-secs", "0",
                         "--duration-secs", args.legacy_secs], args.gen_timeout, f"tarn load ({sig})")
        match = re.search(r"acknowledged\s+(\d+)", out)
        if not match:
            raise BenchError(f"cannot find 'acknowledged N' in tarn load's output:\n{out}")
        sent[SIGNAL_TABLE[sig]] = int(match.group(1))
    return sent


SERVICES = [f"service-{i:02d}" for i in range(50)]
LEVELS = [(5, "DEBUG", 5), (9, "INFO", 80), (13, "WARN", 12), (17, "ERROR", 3)]  # number, text, %
MESSAGES = ["request handled", "cache miss", "retrying upstream call", "connection reset by peer",
            "slow query detected", "user logged in", "payment declined", "queue depth high",
            "config reloaded", "timeout waiting for lock"]


def _hex_id(seed, *parts, size):
    return hashlib.blake2b(f"{seed}:{':'.join(map(str, parts))}".encode(), digest_size=size).hexdigest()


def _attr(key, value):
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _resource(service):
    return {"attributes": [_attr("service.name", service), _attr("host.name", f"host-{service[-2:]}")]}


class OtlpJsonSender:
    """Posts OTLP/JSON bodies over HTTP from a few threads, retrying 429/503 and errors."""

    def __init__(self, addr, threads=4, timeout=120):
        self.host, port = addr.rsplit(":", 1)
        self.port, self.timeout = int(port), timeout
        self.jobs = queue.Queue(maxsize=threads * 4)
        self.error = None
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _work(self):
        conn = None
        while True:
            job = self.jobs.get()
            if job is None:
                return
            path, body = job
            for attempt in range(60):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    text = response.read()
                    if response.status == 200:
                        break
                    if response.status not in (429, 503):
                        self.error = f"POST {path}: HTTP {response.status} {text[:300]!r}"
                        break
                except (OSError, http.client.HTTPException) as exc:
                    conn = None
                    if attempt == 59:
                        self.error = f"POST {path}: {exc}"
                time.sleep(min(0.1 * (attempt + 1), 2.0))
            else:
                self.error = f"POST {path}: still refused after 60 attempts"

    def post(self, path, obj):
        if self.error:
            raise BenchError(self.error)
        self.jobs.put((path, json.dumps(obj, separators=(",", ":")).encode()))

    def close(self):
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()
        if self.error:
            raise BenchError(self.error)


def gen_python(args, server):
    """Built-in generator, OTLP/JSON over HTTP, shaped like the anchor's data: traces of 6-14
    spans sharing a trace_id over 50 services (`service-00`..`49`) and 500 names (10 per
    service), ~1% status_code = 2, log-normal durations, 5 attributes incl. user.id, start times
    uniform over the last --days days; logs of the same services with levels, messages and
    trace ids; gauges `cpu.utilization`, `memory.usage` and `request.rate` per service every
    10 s, going back from now (150 points per 10 s). Deterministic for a given --seed, apart from "now". Slow (pure Python): for small
    data only; the 10M run uses `tarn load --shape bench`."""
    rng = random.Random(args.seed)
    now = time.time_ns()
    span_ns = int(args.days * 86400e9)
    sender = OtlpJsonSender(server.addr["otlp_http"])
    sent = {}
    batch = 2000

    def flush_spans(by_service):
        sender.post("/v1/traces", {"resourceSpans": [
            {"resource": _resource(s), "scopeSpans": [{"scope": {"name": "qb-gen"}, "spans": spans}]}
            for s, spans in by_service.items()]})

    # Spans.
    count, trace, pending, by_service = 0, 0, 0, {}
    while count < args.spans:
        trace_id = _hex_id(args.seed, "t", trace, size=16)
        n = min(rng.randint(6, 14), args.spans - count)
        t0 = now - rng.randrange(span_ns)
        parent = None
        offset = 0
        for j in range(n):
            si = rng.randrange(50)
            start = t0 + offset
            offset += rng.randrange(2_000_000)
            duration = int(rng.lognormvariate(math.log(5e6), 1.2))
            span_id = _hex_id(args.seed, "s", trace, j, size=8)
            span = {"traceId": trace_id, "spanId": span_id, "name": f"operation-{si * 10 + rng.randrange(10):03d}",
                    "kind": 2 if j == 0 else 3, "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + duration),
                    "attributes": [_attr("user.id", f"user-{rng.randrange(2_000_000)}"),
                                   _attr("http.method", rng.choice(("GET", "GET", "GET", "POST", "PUT"))),
                                   _attr("http.status_code", rng.choice((200, 200, 200, 201, 404, 500))),
                                   _attr("region", rng.choice(("eu-west-1", "us-east-1", "ap-south-1"))),
                                   _attr("retry", rng.random() < 0.05)]}
            if parent:
                span["parentSpanId"] = parent
            if rng.random() < 0.01:
                span["status"] = {"code": 2, "message": "internal error"}
            elif rng.random() < 0.5:
                span["status"] = {"code": 1}
            parent = span_id
            by_service.setdefault(SERVICES[si], []).append(span)
        count += n
        pending += n
        trace += 1
        if pending >= batch:
            flush_spans(by_service)
            pending, by_service = 0, {}
    if by_service:
        flush_spans(by_service)
    sent["spans"] = count
    traces = max(trace, 1)

    # Logs.
    weights = [w for _, _, w in LEVELS]
    by_service, pending = {}, 0
    for k in range(args.logs):
        si = rng.randrange(50)
        number, text, _ = rng.choices(LEVELS, weights)[0]
        t = rng.randrange(traces)
        record = {"timeUnixNano": str(now - rng.randrange(span_ns)), "severityNumber": number,
                  "severityText": text, "body": {"stringValue": rng.choice(MESSAGES)},
                  "traceId": _hex_id(args.seed, "t", t, size=16),
                  "spanId": _hex_id(args.seed, "s", t, 0, size=8),
                  "attributes": [_attr("user.id", f"user-{rng.randrange(2_000_000)}")]}
        by_service.setdefault(SERVICES[si], []).append(record)
        pending += 1
        if pending >= batch or k == args.logs - 1:
            sender.post("/v1/logs", {"resourceLogs": [
                {"resource": _resource(s), "scopeLogs": [{"scope": {"name": "qb-gen"}, "logRecords": recs}]}
                for s, recs in by_service.items()]})
            by_service, pending = {}, 0
    if args.logs > 0:
        sent["log_entries"] = args.logs

    # Metrics: three gauges per service every 10 s, going back from now.
    if args.metrics > 0:
        names = ("cpu.utilization", "memory.usage", "request.rate")
        steps = math.ceil(args.metrics / (len(SERVICES) * len(names)))
        total = 0
        for si, service in enumerate(SERVICES):
            for lo in range(0, steps, 1000):
                metrics = []
                for name in names:
                    points = []
                    for i in range(lo, min(lo + 1000, steps)):
                        if total >= args.metrics:
                            break
                        points.append({"timeUnixNano": str(now - i * 10_000_000_000),
                                       "asDouble": round(rng.uniform(0, 1), 6),
                                       "attributes": [_attr("cpu", str(rng.randrange(4)))]})
                        total += 1
                    if points:
                        metrics.append({"name": name, "unit": "1", "gauge": {"dataPoints": points}})
                if metrics:
                    sender.post("/v1/metrics", {"resourceMetrics": [
                        {"resource": _resource(service),
                         "scopeMetrics": [{"scope": {"name": "qb-gen"}, "metrics": metrics}]}]})
        sent["measures"] = total
    sender.close()
    return sent


GENERATORS = {"tarn": gen_tarn_shape, "python": gen_python, "tarn-legacy": gen_tarn_legacy}


def generate(args, server):
    kind = args.generator
    if kind == "auto":
        kind = "tarn" if "--shape" in tarn_load_help(args.binary) else "python"
    log(f"generating with '{kind}': {args.spans:,} spans, {args.logs:,} log records, "
        f"{args.metrics:,} metric points, seed {args.seed}, {args.days} days")
    started = time.monotonic()
    cpu0 = cpu_ticks(server.pid)
    sent = GENERATORS[kind](args, server)
    info = {"generator": kind, "sent": sent, "send_secs": round(time.monotonic() - started, 1),
            "server_cpu_secs_while_sending": round((cpu_ticks(server.pid) - cpu0) * TICK_SECONDS, 1)}
    log(f"sent {sent} in {info['send_secs']} s")
    return info


# ---------------------------------------------------------------------------------------------
# Table state: committed rows, files and bytes from the Delta log (delta-rs).

def table_dir(data_dir, table):
    return Path(data_dir).resolve() / "lake" / table


def table_files(data_dir, table):
    """The table's active files: [(absolute path, bytes, records)]; [] if no commit yet."""
    import deltalake

    path = table_dir(data_dir, table)
    try:
        dt = deltalake.DeltaTable(str(path))
    except Exception as exc:  # noqa: BLE001 - no table yet
        if "not a Delta table" in str(exc) or "No files in log segment" in str(exc) or not path.exists():
            return []
        raise
    rows = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes", "num_records"]).to_pydict()
    return [(str(path / unquote(p)), s, n) for p, s, n in zip(rows["path"], rows["size_bytes"], rows["num_records"])]


def table_stats(data_dir, table):
    files = table_files(data_dir, table)
    row_groups = 0
    for p, _, _ in files:
        try:
            row_groups += pq.ParquetFile(p).metadata.num_row_groups
        except Exception:  # noqa: BLE001 - reported as unknown
            row_groups = None
            break
    return {"files": len(files), "bytes": sum(s for _, s, _ in files),
            "rows": sum(n or 0 for _, _, n in files), "row_groups": row_groups}


def flight_count(conn, table, timeout):
    return int(tarn_query(conn, f"SELECT count(*) AS n FROM {table}", timeout).column(0)[0].as_py())


def wait_committed(args, server, sent):
    """Waits until FlightSQL counts what was sent and the Delta log holds all of it."""
    deadline = time.monotonic() + args.commit_timeout
    conn = tarn_connect(server.flight_uri)
    try:
        while True:
            seen = {t: (flight_count(conn, t, 120), table_stats_rows(args.data_dir, t)) for t in sent}
            if all(f == sent[t] and c == sent[t] for t, (f, c) in seen.items()):
                log(f"all committed: {sent}")
                return
            over = {t: v for t, v in seen.items() if max(v) > sent[t]}
            if over:
                raise BenchError(f"more rows than were sent (flightsql, committed): {over}, sent {sent}")
            if time.monotonic() > deadline:
                raise BenchError(f"not all rows committed after {args.commit_timeout:.0f} s: "
                                 f"(flightsql, committed) {seen}, sent {sent}")
            log(f"waiting for commits: (flightsql, committed) {seen}")
            time.sleep(max(1.0, args.flush_secs / 2))
    finally:
        conn.close()


def table_stats_rows(data_dir, table):
    return sum(n or 0 for _, _, n in table_files(data_dir, table))


# ---------------------------------------------------------------------------------------------
# Engines.

def tarn_connect(uri):
    return adbc_driver_flightsql.dbapi.connect(uri, autocommit=True)


def tarn_query(conn, sql, timeout):
    """Runs SQL through ADBC (CreatePreparedStatement, GetFlightInfo, DoGet) into one Arrow table."""
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{
            adbc_driver_flightsql.StatementOptions.TIMEOUT_QUERY.value: str(float(timeout)),
            adbc_driver_flightsql.StatementOptions.TIMEOUT_FETCH.value: str(float(timeout))})
        cur.execute(sql)
        return cur.fetch_arrow_table()


def duckdb_connect(data_dir, tables):
    extension = (Path(duckdb_extension_delta.__path__[0]) / "extensions"
                 / f"v{duckdb.__version__}" / "delta.duckdb_extension")
    if not extension.exists():
        raise BenchError(f"no DuckDB delta extension at {extension} (duckdb must equal the "
                         f"duckdb-extension-delta wheel's version)")
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false")
    con.execute("SET autoload_known_extensions=false")
    con.execute(f"LOAD '{extension}'")
    con.execute("SET TimeZone='UTC'")
    for table in tables:
        path = table_dir(data_dir, table)
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM delta_scan('{path}')")
    return con


def duckdb_query(con, sql, timeout):
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.InterruptException:
        raise BenchError(f"DuckDB query exceeded {timeout:.0f} s") from None
    finally:
        timer.cancel()


# ---------------------------------------------------------------------------------------------
# Queries.

def ts_literal(dt):
    return f"TIMESTAMP '{dt.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def build_queries(now, day, trace_id, other_traces=()):
    """The five canonical queries q1-q5 (issue 6, shared/reference/query-anchor.md) and a
    baseline q0 (`SELECT 1`: what a statement costs before any data is read), as
    (key, title, tarn SQL, duckdb SQL, {compare options}). The SQL is the same in both
    engines except the approximate p99 function."""
    hour_ago = ts_literal(now - datetime.timedelta(hours=1))
    p99 = ("SELECT service_name, name, {f} AS p99 FROM spans WHERE date = '%s' "
           "GROUP BY 1, 2 ORDER BY 1, 2" % day)
    q1 = (f"SELECT service_name, count(*) AS errors FROM spans WHERE status_code = 2 "
          f"AND start_time >= {hour_ago} GROUP BY 1 ORDER BY 2 DESC, 1")
    q3 = f"SELECT * FROM spans WHERE trace_id = '{trace_id}' ORDER BY start_time"
    q4 = (f"SELECT date_trunc('minute', time) AS minute, avg(value) AS avg_value FROM measures "
          f"WHERE name = 'cpu.utilization' AND time >= {hour_ago} GROUP BY 1 ORDER BY 1")
    q5 = ("SELECT trace_id, span_id, service_name, name, start_time, duration_ns FROM spans "
          "ORDER BY duration_ns DESC LIMIT 20")
    return [
        ("q0", "baseline: SELECT 1 (fixed cost per statement)", "SELECT 1 AS one", "SELECT 1 AS one", {}),
        ("q1", "errors by service, last hour", q1, q1, {}),
        ("q2", "p99 duration by service and name, one day",
         p99.format(f="approx_percentile_cont(duration_ns, 0.99)"),
         p99.format(f="approx_quantile(duration_ns, 0.99)"), {"approx": "p99"}),
        ("q3", "all spans of one trace", q3, q3, {"unordered_ties": True}),
        # The same lookup, another trace each round (spread over the data's time range), so
        # no engine answers from what the previous round read.
        ("q3b", "all spans of one trace, another trace each round", q3, q3,
         {"unordered_ties": True,
          "rounds_sql": [q3.replace(trace_id, other) for other in other_traces]}),
        ("q4", "cpu.utilization avg per minute, last hour", q4, q4, {}),
        ("q5", "top 20 slowest spans", q5, q5, {"unordered_ties": True}),
    ]


def canonical(value):
    """A comparable value: timestamps as UTC ISO text (naive ones taken as UTC), maps as
    lists of pairs, bytes as hex."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def rows_of(table):
    cols = [c.to_pylist() for c in table.columns]
    return [[canonical(col[i]) for col in cols] for i in range(table.num_rows)]


def logical_type(t):
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_map(t):
        return f"map<{logical_type(t.key_type)}, {logical_type(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{logical_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {logical_type(f.type)}" for f in t) + ">"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}]"  # tz: compared as an instant, see canonical()
    return str(t)


def values_equal(a, b, rel):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k], rel) for k in a)
    return a == b


def compare(tarn, duck, opts, p99_tolerance, exact=None, info=None, float_rel=1e-9):
    """(ok, note): rows equal (floats within float_rel; the approximate p99 within
    p99_tolerance, relative, or no further from `exact` (DuckDB's exact quantile_cont)
    than DuckDB's estimate); the note says what differs, or the p99 differences."""
    notes = []
    info = {} if info is None else info
    if tarn.column_names != duck.column_names:
        notes.append(f"column names: tarn {tarn.column_names} vs duckdb {duck.column_names}")
    tt = [logical_type(t) for t in tarn.schema.types]
    dt = [logical_type(t) for t in duck.schema.types]
    if tt != dt:
        diffs = [f"{n}: tarn {a} / duckdb {b}" for n, a, b in zip(tarn.column_names, tt, dt) if a != b]
        info["types"] = "; ".join(diffs)
    if tarn.num_rows != duck.num_rows:
        return False, "; ".join([f"row count: tarn {tarn.num_rows} vs duckdb {duck.num_rows}", *notes])
    a, b = rows_of(tarn), rows_of(duck)
    if opts.get("approx"):
        col = tarn.column_names.index(opts["approx"])
        keys_a = [r[:col] + r[col + 1:] for r in a]
        keys_b = [r[:col] + r[col + 1:] for r in b]
        if keys_a != keys_b:
            first = next(i for i, (x, y) in enumerate(zip(keys_a, keys_b)) if x != y)
            return False, f"group keys differ at row {first}: tarn {keys_a[first]} vs duckdb {keys_b[first]}"
        def rel_diffs(p, q):
            return [abs(x[col] - y[col]) / max(abs(x[col]), abs(y[col]), 1e-300)
                    for x, y in zip(p, q) if x[col] is not None and y[col] is not None]

        rel = rel_diffs(a, b)
        nulls = sum((x[col] is None) != (y[col] is None) for x, y in zip(a, b))
        worst = max(rel, default=0.0)
        med = statistics.median(rel) if rel else 0.0
        note = f"p99 rel. diff: max {worst:.1%}, median {med:.1%} over {len(rel)} groups"
        info.update(p99_max_diff=worst, p99_median_diff=med, groups=len(rel))
        ok = worst <= p99_tolerance and nulls == 0
        if exact is not None and exact.num_rows == len(a):
            e = rows_of(exact)
            if [r[:col] + r[col + 1:] for r in e] == keys_a:
                err_t, err_d = max(rel_diffs(a, e), default=0.0), max(rel_diffs(b, e), default=0.0)
                note += f" (max error vs the exact p99: tarn {err_t:.1%}, duckdb {err_d:.1%})"
                info.update(p99_max_error_tarn=err_t, p99_max_error_duckdb=err_d)
                # Sparse groups make both estimates rough: accept Tarn when it is no further
                # from the exact value than DuckDB is.
                ok = nulls == 0 and (ok or err_t <= max(err_d, p99_tolerance))
        if nulls:
            note += f"; {nulls} groups NULL in one engine only"
        return ok, "; ".join([note, *notes])
    if opts.get("unordered_ties"):  # ORDER BY leaves ties free: compare as multisets
        key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
        a, b = sorted(a, key=key), sorted(b, key=key)
    for i, (x, y) in enumerate(zip(a, b)):
        if not values_equal(x, y, float_rel):
            cols = [tarn.column_names[j] for j in range(len(x)) if not values_equal(x[j], y[j], float_rel)]
            return False, "; ".join([f"row {i} differs in {cols}: tarn {short(x)} vs duckdb {short(y)}", *notes])
    return True, "; ".join(notes)


def short(row, limit=400):
    text = json.dumps(row, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def is_cancel(exc):
    """The ADBC driver turns Ctrl-C during a call into a cancelled call (OperationalError)."""
    return "context canceled" in str(exc) and "CANCELLED" in str(exc)


def error_text(exc):
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1500]


def run_benchmark(args, server):
    conn = tarn_connect(server.flight_uri)
    duck = duckdb_connect(args.data_dir, TABLES)
    try:
        return _run_benchmark(args, server, conn, duck)
    finally:
        conn.close()
        duck.close()


def _run_benchmark(args, server, conn, duck):
    t = args.query_timeout
    bounds = tarn_query(conn, "SELECT min(start_time) AS lo, max(start_time) AS hi, count(*) AS n FROM spans", t)
    lo, hi, n = (bounds.column(i)[0].as_py() for i in range(3))
    if not n:
        raise BenchError("the spans table is empty")
    dbounds = duckdb_query(duck, "SELECT min(start_time), max(start_time), count(*) FROM spans", t)
    dlo, dhi, dn = (dbounds.column(i)[0].as_py() for i in range(3))
    if (canonical(lo), canonical(hi), n) != (canonical(dlo), canonical(dhi), dn):
        log(f"WARNING: engines disagree on spans' bounds: tarn {lo} {hi} {n}, duckdb {dlo} {dhi} {dn}")
    now = hi.astimezone(datetime.timezone.utc).replace(tzinfo=None) if hi.tzinfo else hi
    first = lo.astimezone(datetime.timezone.utc).replace(tzinfo=None) if lo.tzinfo else lo
    # q2's day: the full UTC day before now's day if the data covers it, else now's day.
    day = (now - datetime.timedelta(days=1)).date()
    if datetime.datetime.combine(day, datetime.time()) < first:
        day = now.date()
    mid = first + (now - first) / 2
    trace = duckdb_query(duck, f"SELECT trace_id FROM spans WHERE trace_id IS NOT NULL AND "
                               f"start_time >= {ts_literal(mid)} ORDER BY start_time LIMIT 1", t)
    if trace.num_rows == 0:
        raise BenchError("no span with a trace_id after the middle of the data")
    trace_id = trace.column(0)[0].as_py()
    # q3b's traces: one starting after each of the 20 evenly spaced points in time.
    other_traces = []
    for i in range(1, 21):
        point = first + (now - first) * (i / 21)
        found = duckdb_query(duck, f"SELECT trace_id FROM spans WHERE trace_id IS NOT NULL AND "
                                   f"start_time >= {ts_literal(point)} AND trace_id <> '{trace_id}' "
                                   f"ORDER BY start_time LIMIT 1", t)
        if found.num_rows:
            other_traces.append(found.column(0)[0].as_py())
    setup = {"now": now.isoformat(sep=" "), "first": first.isoformat(sep=" "), "spans": n,
             "q2_day": day.isoformat(), "trace_id": trace_id}
    log(f"now = max(start_time) = {now}; q2 day {day}; trace {trace_id}")

    setup["loadavg_before"] = loadavg()
    results = []
    for key, title, tarn_sql, duck_sql, opts in build_queries(now, day.isoformat(), trace_id,
                                                              other_traces):
        if args.only and key not in args.only:
            continue
        res = {"query": key, "title": title, "tarn_sql": tarn_sql, "duckdb_sql": duck_sql,
               "tarn_ms": [], "duckdb_ms": [], "tarn_cpu_s": [], "duckdb_cpu_s": [],
               "tarn_client_cpu_s": []}
        results.append(res)
        log(f"{key} ({title}): warm-up")

        def time_tarn(sql=tarn_sql):
            c0, s0, w0 = cpu_ticks(server.pid), self_cpu(), time.perf_counter()
            table = tarn_query(conn, sql, t)
            w1, s1, c1 = time.perf_counter(), self_cpu(), cpu_ticks(server.pid)
            res["tarn_ms"].append((w1 - w0) * 1000)
            res["tarn_cpu_s"].append((c1 - c0) * TICK_SECONDS)
            res["tarn_client_cpu_s"].append(s1 - s0)  # ADBC driver + Arrow import, in this process
            return table

        def time_duck(sql=duck_sql):
            c0, w0 = self_cpu(), time.perf_counter()
            table = duckdb_query(duck, sql, t)
            w1, c1 = time.perf_counter(), self_cpu()
            res["duckdb_ms"].append((w1 - w0) * 1000)
            res["duckdb_cpu_s"].append(c1 - c0)
            return table

        duck_table = time_duck()
        res["rows"] = duck_table.num_rows
        try:
            tarn_table = time_tarn()
        except Exception as exc:  # noqa: BLE001 - a Tarn failure is a result, reported
            if is_cancel(exc):
                raise KeyboardInterrupt from None
            if not server.alive():
                raise BenchError(f"tarn serve died during {key}; log:\n{tail(server.log_path)}") from None
            res["error"] = error_text(exc)
            res["check"] = "ERROR"
            log(f"{key}: tarn failed: {res['error']}")
        else:
            exact = None
            if opts.get("approx"):  # the exact percentile, once, untimed, as the referee
                exact = duckdb_query(duck, duck_sql.replace("approx_quantile(", "quantile_cont("), t)
            info = {}
            ok, note = compare(tarn_table, duck_table, opts, args.p99_tolerance, exact, info)
            res["check"], res["note"], res["compare"] = ("same" if ok else "DIFFERENT"), note, info
            if not ok:
                res["tarn_rows"] = tarn_table.num_rows
                log(f"{key}: results differ: {note}")
            elif note:
                log(f"{key}: {note}")
        res["warmup_tarn_ms"] = res["tarn_ms"][:1]
        res["warmup_duckdb_ms"] = res["duckdb_ms"][:1]
        for k in ("tarn_ms", "duckdb_ms", "tarn_cpu_s", "duckdb_cpu_s", "tarn_client_cpu_s"):
            res[k] = []
        per_round = opts.get("rounds_sql") or []
        for r in range(args.rounds):
            order = (time_tarn, time_duck) if r % 2 == 0 else (time_duck, time_tarn)
            for f in order:
                if f is time_tarn and "error" in res:
                    continue
                if per_round:  # the same statement for both engines in a round
                    f(per_round[r % len(per_round)])
                else:
                    f()
        summarize(res)
        log(f"{key}: duckdb {fmt_ms(res.get('duckdb_median_ms'))} ms, tarn {fmt_ms(res.get('tarn_median_ms'))} ms")
    setup["loadavg_after"] = loadavg()
    return setup, results


def loadavg():
    """The 1-minute load average: other work on the machine makes timings noisy."""
    return open("/proc/loadavg").read().split()[0]


def summarize(res):
    for e in ("tarn", "duckdb"):
        if res[f"{e}_ms"]:
            res[f"{e}_median_ms"] = statistics.median(res[f"{e}_ms"])
            res[f"{e}_cpu_per_query_s"] = sum(res[f"{e}_cpu_s"]) / len(res[f"{e}_cpu_s"])
    if res["tarn_client_cpu_s"]:
        res["tarn_client_cpu_per_query_s"] = sum(res["tarn_client_cpu_s"]) / len(res["tarn_client_cpu_s"])
    if res.get("tarn_median_ms") and res.get("duckdb_median_ms"):
        res["ratio"] = res["tarn_median_ms"] / res["duckdb_median_ms"]


# ---------------------------------------------------------------------------------------------
# Report.

def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def machine():
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "ram_gib": round(mem_kb / 1048576, 1), "cpu": model,
            "kernel": platform.release()}


def versions(binary):
    tarn = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    st = os.stat(binary)
    built = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    import deltalake
    return {"tarn": f"{tarn} ({binary}, built {built})", "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "duckdb-extension-delta": _dist_version("duckdb_extension_delta"),
            "adbc-driver-flightsql": _dist_version("adbc-driver-flightsql"),
            "pyarrow": pa.__version__, "deltalake": deltalake.__version__}


def _dist_version(name):
    from importlib.metadata import version
    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


def render(report):
    m, v, s = report["machine"], report["versions"], report["setup"]
    gen = report.get("generation") or {}
    out = [f"### Query benchmark, {report['date']}", ""]
    rows = ", ".join(f"{report['rows'].get(t, 0):,} {t}" for t in TABLES)
    if not gen:
        how = " (reused data directory)"
    elif gen["generator"] == "tarn-legacy":
        how = f" (generator `tarn-legacy`: not the anchor's shape; sent in {gen['send_secs']} s)"
    else:
        how = (f" (generator `{gen['generator']}`, seed {report['args']['seed']}, {report['args']['days']:g} days; "
               f"sent in {gen['send_secs']} s)")
    out.append(f"Data: {rows}{how}.")
    out.append(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
               f"load average {s['loadavg_before']} before the queries, {s['loadavg_after']} after.")
    out.append(f"Versions: {v['tarn']}; DuckDB {v['duckdb']} + duckdb-extension-delta "
               f"{v['duckdb-extension-delta']} (loaded offline by path); ADBC FlightSQL driver "
               f"{v['adbc-driver-flightsql']}; pyarrow {v['pyarrow']}; Python {v['python']}.")
    out.append(f"Method: \"now\" = max(start_time) = `{s['now']}`, inlined; per query one warm-up per "
               f"engine (results compared), then {report['args']['rounds']} round(s) alternating the engine "
               f"order; median wall ms. Tarn: end to end through FlightSQL (ADBC `execute` + "
               f"`fetch_arrow_table`), CPU = the tarn server's user+sys (/proc, 10 ms ticks). DuckDB: in "
               f"process, `delta_scan` views, CPU = this process's getrusage. CPU-s are means per query.")
    out.append("")
    out.append("| query | rows | DuckDB ms | Tarn ms | Tarn / DuckDB | DuckDB CPU-s | Tarn CPU-s | results |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in report["results"]:
        check, c = r["check"], r.get("compare", {})
        if check != "same":
            check = f"**{check}**"
        elif "p99_max_diff" in c:
            check += f" (p99 Δ ≤ {c['p99_max_diff']:.1%}"
            if "p99_max_error_tarn" in c:
                check += f"; max error vs exact: Tarn {c['p99_max_error_tarn']:.0%}, DuckDB {c['p99_max_error_duckdb']:.0%}"
            check += ")"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else "-"
        cpu = lambda e: f"{r[e]:.3f}" if r.get(e) is not None else "-"  # noqa: E731
        out.append(f"| {r['query']} {r['title']} | {r.get('rows', '-')} | {fmt_ms(r.get('duckdb_median_ms'))} | "
                   f"{fmt_ms(r.get('tarn_median_ms'))} | {ratio} | {cpu('duckdb_cpu_per_query_s')} | "
                   f"{cpu('tarn_cpu_per_query_s')} | {check} |")
    layout = report.get("layout") or {}
    if any("after" in st for st in layout.values()):
        out += ["", "Tables (active files in the Delta log; row groups from the Parquet footers):", "",
                "| table | rows | files before maintain | bytes before | files after | bytes after | row groups after |",
                "|---|---|---|---|---|---|---|"]
        for t, st in layout.items():
            b, a = st["before"], st.get("after") or st["before"]
            out.append(f"| {t} | {a['rows']:,} | {b['files']} | {fmt_bytes(b['bytes'])} | "
                       f"{a['files']} | {fmt_bytes(a['bytes'])} | {a['row_groups']} |")
        out += ["", f"`tarn maintain` took {report['maintain_secs']:.1f} s."]
    elif layout:
        out += ["", "Tables (active files in the Delta log; row groups from the Parquet footers; no maintenance "
                    "in this run):", "", "| table | rows | files | bytes | row groups |", "|---|---|---|---|---|"]
        for t, st in layout.items():
            b = st["before"]
            out.append(f"| {t} | {b['rows']:,} | {b['files']} | {fmt_bytes(b['bytes'])} | {b['row_groups']} |")
    out += ["", "Queries (DuckDB's p99 is `approx_quantile(duration_ns, 0.99)`):", ""]
    for r in report["results"]:
        out.append(f"- {r['query']}: `{r['tarn_sql']}`")
    problems = [r for r in report["results"] if r["check"] != "same"]
    if problems:
        out += ["", "Differences and errors:", ""]
        for r in problems:
            out.append(f"- {r['query']}: {r.get('error') or r.get('note')}")
    typed = [r for r in report["results"] if r.get("compare", {}).get("types")]
    if typed:
        out += ["", "Result column types that differ (values compared equal): "
                + "; ".join(f"{r['query']} {r['compare']['types']}" for r in typed) + "."]
    out.append("")
    out.append(f"Command: `{report['command']}`")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--binary", default=DEFAULT_BINARY, help="the tarn binary")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="generate into this directory (must not exist or be empty); "
                                          "kept, for later --reuse. Default: a temporary directory, "
                                          "deleted at exit unless --keep")
    where.add_argument("--reuse", metavar="DIR", help="benchmark an existing data directory: no generation "
                                                      "(and no maintenance unless --maintain)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    p.add_argument("--work-dir", help="logs, report.md and report.json. Default: <data dir>/../qb-<time>")
    p.add_argument("--spans", type=int, default=200_000)
    p.add_argument("--logs", type=int, default=200_000)
    p.add_argument("--metrics", type=int, default=108_000,
                   help="metric points: 150 per 10 s (50 services x 3 gauges) going back from now, so "
                        "108,000 cover 2 hours and 3,888,000 cover 3 days")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--days", type=float, default=3)
    p.add_argument("--generator", choices=["auto", *GENERATORS], default="auto",
                   help="auto: `tarn load --shape bench` if the binary has it, else the built-in "
                        "Python OTLP/JSON generator")
    p.add_argument("--legacy-secs", type=float, default=5, help="tarn-legacy: seconds of load per signal")
    p.add_argument("--flush-secs", type=int, default=5, help="tarn serve --flush-interval-secs")
    p.add_argument("--maintain", action=argparse.BooleanOptionalAction, default=None,
                   help="run `tarn maintain` before querying (default: yes after generating, no with --reuse)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", nargs="*", help="only these queries, e.g. q1 q3")
    p.add_argument("--p99-tolerance", type=float, default=0.25,
                   help="largest relative p99 difference between the engines accepted as the same")
    p.add_argument("--query-timeout", type=float, default=300, help="seconds per query (each engine)")
    p.add_argument("--gen-timeout", type=float, default=7200, help="seconds per generation step")
    p.add_argument("--commit-timeout", type=float, default=900, help="seconds to wait for the commits")
    p.add_argument("--maintain-timeout", type=float, default=3600)
    p.add_argument("--ready-timeout", type=float, default=120, help="seconds for tarn serve to be ready")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `tarn serve` argument (repeatable; "
                                                                      "use --serve-arg=--flag)")
    return p.parse_args()


def main():
    args = parse_args()
    if not os.access(args.binary, os.X_OK):
        raise BenchError(f"no tarn binary at {args.binary} (--binary)")
    args.binary = str(Path(args.binary).resolve())
    temp = None
    if args.reuse:
        args.data_dir = str(Path(args.reuse).resolve())
        if not (table_dir(args.data_dir, "spans") / "_delta_log").is_dir():
            raise BenchError(f"{args.reuse} holds no spans table (lake/spans/_delta_log)")
    elif args.data_dir:
        d = Path(args.data_dir)
        if d.exists() and any(d.iterdir()):
            raise BenchError(f"--data-dir {d} is not empty; pass --reuse {d} to benchmark it as it is")
        d.mkdir(parents=True, exist_ok=True)
        args.data_dir = str(d.resolve())
    else:
        temp = tempfile.mkdtemp(prefix="qb-data-")
        args.data_dir = temp
    maintain = args.maintain if args.maintain is not None else not args.reuse
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = Path(args.work_dir or Path(args.data_dir).parent / f"qb-{stamp}")
    work.mkdir(parents=True, exist_ok=True)
    log(f"data dir {args.data_dir}; work dir {work}")

    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": " ".join(["python", *sys.argv]), "machine": machine(),
              "versions": versions(args.binary),
              "args": {k: v for k, v in vars(args).items() if k != "serve_arg"}}
    server = Server(args.binary, args.data_dir, work / "tarn-serve.log", args.flush_secs, args.serve_arg,
                    args.ready_timeout)
    try:
        server.start()
        if not args.reuse:
            report["generation"] = generate(args, server)
            wait_committed(args, server, report["generation"]["sent"])
        report["layout"] = {t: {"before": table_stats(args.data_dir, t)} for t in TABLES}
        if maintain:
            server.stop()
            started = time.monotonic()
            out = run_child([args.binary, "maintain", "--data-dir", args.data_dir], args.maintain_timeout,
                            "tarn maintain")
            report["maintain_secs"] = time.monotonic() - started
            (work / "tarn-maintain.log").write_text(out)
            for t in TABLES:
                report["layout"][t]["after"] = table_stats(args.data_dir, t)
            server.start()
        report["rows"] = {t: (report["layout"][t].get("after") or report["layout"][t]["before"])["rows"]
                          for t in TABLES}
        report["setup"], report["results"] = run_benchmark(args, server)
    except BaseException:
        server.stop(grace=10)  # failing or interrupted: no long graceful shutdown
        raise
    finally:
        server.stop()
        if temp and not args.keep:
            shutil.rmtree(temp, ignore_errors=True)
    text = render(report)
    (work / "report.md").write_text(text + "\n")
    (work / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(text)
    log(f"written {work / 'report.md'} and {work / 'report.json'}")
    bad = [r["query"] for r in report["results"] if r["check"] != "same"]
    if bad:
        log(f"results differ or failed: {', '.join(bad)}")
    return 1 if bad else 0


def _on_sigterm(signum, frame):
    log("terminated (SIGTERM)")
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        if is_cancel(exc):
            log("interrupted")
            sys.exit(130)
        raise
