"""Checks of everything under deploy/, run by deploy/validate.sh.

Each check prints `ok   <name>: <what was checked>`, `FAIL <name>: <why>` or
`SKIP <name>: <why>`; the script exits non-zero if anything failed (or, with
--strict, was skipped). External validators are found through environment variables set
by validate.sh (COMPOSE, KUBECTL, KUBERNETES_VALIDATE, HADOLINT, OTELCOL,
SYSTEMD_ANALYZE) and TARN_BIN, optionally, for the live checks.

Facts are read from the sources rather than repeated here: flags, their environment
variables and defaults from gateway/src/cli.rs; table names from docs/schema.md; the Rust
version from Cargo.toml.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

try:
    import yaml
except ImportError:  # validate.sh runs this with its virtualenv's python
    sys.exit("deploy/validate/checks.py needs PyYAML: run it through deploy/validate.sh")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CLI_RS = ROOT / "gateway" / "src" / "cli.rs"
SCHEMA_MD = ROOT / "docs" / "schema.md"

TARN_PORTS = {"otlp_grpc_port": 4317, "otlp_http_port": 4318, "native_port": 9000, "flightsql_port": 50051}
# Variables Tarn reads that are not a `tarn serve` flag's own env (see serve.rs, cli.rs).
EXTRA_TARN_ENV = {"TARN_LOG", "TARN_CONFIG", "TARN_API_KEY", "TARN_FLIGHTSQL_URL"}
MICROMEGAS_ENV = {
    "MICROMEGAS_SQL_CONNECTION_STRING",
    "MICROMEGAS_OBJECT_STORE_URI",
    "MICROMEGAS_API_KEYS",
    "MICROMEGAS_TELEMETRY_URL",
}
# Flags that cannot sensibly appear in the configuration file itself.
NOT_IN_FILE = {"config"}
GIB = 1 << 30


class Report:
    def __init__(self, strict: bool):
        self.strict = strict
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, name: str, what: str) -> None:
        self.passed += 1
        print(f"ok   {name}: {what}", flush=True)

    def fail(self, name: str, why: str) -> None:
        self.failed += 1
        print(f"FAIL {name}: {why}", flush=True)

    def skip(self, name: str, why: str) -> None:
        if self.strict:
            self.fail(name, f"validator missing under CI: {why}")
        else:
            self.skipped += 1
            print(f"SKIP {name}: {why}", flush=True)

    def note(self, name: str, what: str) -> None:
        print(f"note {name}: {what}", flush=True)

    def check(self, name: str, errors: list[str], what: str) -> None:
        if errors:
            self.fail(name, "\n     ".join(errors))
        else:
            self.ok(name, what)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def tool(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value and Path(value).exists() else None


# --- gateway/src/cli.rs: the flags of `tarn serve` ------------------------------------------


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Splits on `sep` outside strings, parentheses and brackets."""
    parts, depth, current, in_str, escape = [], 0, [], False, False
    for ch in text:
        if in_str:
            current.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _attributes_and_fields(body: str):
    """Yields (attributes, field name, field type) of a struct body."""
    body = re.sub(r"^\s*//.*$", "", body, flags=re.M)
    i, attrs = 0, []
    while i < len(body):
        if body.startswith("#[", i):
            depth, j, in_str = 0, i + 1, False
            while j < len(body):
                ch = body[j]
                if in_str:
                    if ch == "\\":
                        j += 1
                    elif ch == '"':
                        in_str = False
                elif ch == '"':
                    in_str = True
                elif ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            attrs.append(body[i + 2 : j])
            i = j + 1
            continue
        m = re.compile(r"pub\s+(\w+)\s*:\s*").match(body, i)
        if m:
            k, depth = m.end(), 0
            while k < len(body) and not (body[k] == "," and depth == 0):
                depth += body[k] == "<"
                depth -= body[k] == ">"
                k += 1
            yield attrs, m.group(1), body[m.end() : k].strip()
            attrs, i = [], k + 1
            continue
        i += 1


def _eval_int(expr: str):
    expr = expr.replace("_", "").strip()
    if not re.fullmatch(r"[0-9.\s*+()]+", expr):
        raise ValueError(expr)
    return eval(expr, {"__builtins__": {}}, {})  # digits and arithmetic only


def serve_flags() -> dict[str, dict]:
    """name -> {type, default, env} for every long flag of `tarn serve`."""
    src = CLI_RS.read_text()
    structs = {m.group(1): m.group(2) for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", src, re.S)}
    flags: dict[str, dict] = {}

    def walk(struct: str) -> None:
        for attrs, name, rust_type in _attributes_and_fields(structs[struct]):
            if any(re.fullmatch(r"command\(\s*flatten\s*\)", a.strip()) for a in attrs):
                walk(rust_type)
                continue
            arg = next((a for a in attrs if a.strip().startswith("arg(")), None)
            if arg is None:
                continue
            items = _split_top(arg.strip()[4:-1])
            opts = {}
            for item in items:
                key, _, value = item.partition("=")
                opts[key.strip()] = value.strip()
            if "long" not in opts:
                continue
            flag = opts["long"].strip('"').replace("-", "_") if opts["long"] else name
            base = re.sub(r"^Option<(.*)>$", r"\1", rust_type)
            kind = {"bool": bool, "f64": float, "f32": float}.get(base)
            if kind is None:
                kind = int if re.fullmatch(r"[ui](8|16|32|64|128|size)", base) else str
            if "default_value_t" in opts:
                try:
                    default = _eval_int(opts["default_value_t"])
                    default = float(default) if kind is float else int(default) if kind is int else default
                except (ValueError, SyntaxError):
                    default = None  # not a literal (a constant, a call): not compared
            elif "default_value" in opts:
                default = json.loads(opts["default_value"])
                default = kind(default) if kind in (int, float) else default
            elif kind is bool:
                default = False
            else:
                default = None
            flags[flag] = {"type": kind, "default": default, "env": opts.get("env", "").strip('"') or None}

    walk("ServeArgs")
    return flags


def known_env(flags: dict[str, dict]) -> set[str]:
    return {f["env"] for f in flags.values() if f["env"]} | EXTRA_TARN_ENV | MICROMEGAS_ENV


# --- tarn.toml ---------------------------------------------------------------------------------


def _type_ok(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def check_toml_text(text: str, flags: dict, complete: bool, where: str) -> list[str]:
    errors = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{where}: not TOML: {e}"]
    for key, value in data.items():
        if key not in flags or key in NOT_IN_FILE:
            errors.append(f"{where}: `{key}` is not a flag of `tarn serve`")
        elif isinstance(value, dict):
            errors.append(f"{where}: `{key}` is a table; the format is flat keys")
        elif not _type_ok(value, flags[key]["type"]):
            errors.append(f"{where}: `{key}` = {value!r} is not a {flags[key]['type'].__name__}")
    commented = {}
    for line in text.splitlines():
        m = re.match(r"^#\s*([a-z_][a-z0-9_]*)\s*=\s*(.+)$", line)
        if m and m.group(1) in flags:
            try:
                commented[m.group(1)] = tomllib.loads(f"{m.group(1)} = {m.group(2)}")[m.group(1)]
            except tomllib.TOMLDecodeError as e:
                errors.append(f"{where}: commented `{line}` would not parse once uncommented: {e}")
    if complete:
        for key, flag in flags.items():
            if key in NOT_IN_FILE:
                continue
            if key not in data and key not in commented:
                errors.append(f"{where}: flag `{key}` is missing (add `# {key} = <default>`)")
            if key in commented:
                value = commented[key]
                if not _type_ok(value, flag["type"]):
                    errors.append(f"{where}: commented `{key}` = {value!r} is not a {flag['type'].__name__}")
                elif flag["default"] is not None and value != flag["default"]:
                    errors.append(
                        f"{where}: commented `{key}` = {value!r} but the built-in default is {flag['default']!r}"
                    )
    return errors


def check_tarn_toml(report: Report, flags: dict) -> None:
    path = DEPLOY / "tarn.toml"
    errors = check_toml_text(path.read_text(), flags, complete=True, where=rel(path))
    report.check(
        "tarn.toml",
        errors,
        f"flat TOML, every key one of the {len(flags)} `tarn serve` flags in cli.rs, each flag present "
        "with its built-in default, types match",
    )


# --- YAML / JSON / TOML parse ----------------------------------------------------------------


def check_parse(report: Report) -> None:
    errors, count = [], 0
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            if path.suffix in (".yaml", ".yml"):
                list(yaml.safe_load_all(path.read_text()))
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())
            else:
                continue
            count += 1
        except Exception as e:  # noqa: BLE001 - any parse error is the finding
            errors.append(f"{rel(path)}: {e}")
    report.check("parse", errors, f"{count} YAML/JSON/TOML files under deploy/ parse")


# --- OpenTelemetry Collector configs ----------------------------------------------------------

COLLECTOR_TOP = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
COLLECTOR_SERVICE = {"extensions", "pipelines", "telemetry"}
SIGNALS = {"traces", "metrics", "logs", "profiles"}
# Component types of the contrib distribution these configs may use.
CONTRIB_TYPES = {
    "receivers": {"otlp", "hostmetrics", "prometheus", "filelog", "journald", "kubeletstats", "k8s_cluster"},
    "processors": {"memory_limiter", "batch", "resourcedetection", "resource", "attributes", "filter",
                   "transform", "k8sattributes"},
    "exporters": {"otlp", "otlphttp", "debug"},
    "extensions": {"health_check", "file_storage", "pprof", "zpages"},
    "connectors": set(),
}
# Keys of the otlp (gRPC) exporter that the otlphttp exporter does not share.
GRPC_ONLY_KEYS = {"balancer_name", "keepalive", "authority", "wait_for_ready", "write_buffer_size",
                  "read_buffer_size", "auth"}
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def merge(base, over):
    """The Collector's merge of several --config files: maps merge, everything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def env_refs(obj) -> dict[str, bool]:
    """Variables referenced as ${env:X} -> whether every reference has a default."""
    refs: dict[str, bool] = {}

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            for m in ENV_REF.finditer(o):
                refs[m.group(1)] = refs.get(m.group(1), True) and bool(m.group(2))

    walk(obj)
    return refs


def collector_errors(cfg: dict, flags: dict, where: str) -> list[str]:
    errors = []
    for key in cfg:
        if key not in COLLECTOR_TOP:
            errors.append(f"{where}: unknown top-level key `{key}`")
    service = cfg.get("service") or {}
    for key in service:
        if key not in COLLECTOR_SERVICE:
            errors.append(f"{where}: unknown key service.{key}")
    for section, types in CONTRIB_TYPES.items():
        for cid in cfg.get(section) or {}:
            if cid.split("/")[0] not in types:
                errors.append(f"{where}: {section}.{cid}: type `{cid.split('/')[0]}` is not on the list of known "
                              "contrib components (validate/checks.py CONTRIB_TYPES)")
    used = {s: set() for s in ("receivers", "processors", "exporters", "extensions")}
    for ext in service.get("extensions") or []:
        used["extensions"].add(ext)
        if ext not in (cfg.get("extensions") or {}):
            errors.append(f"{where}: service.extensions names undefined extension `{ext}`")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        errors.append(f"{where}: no pipelines")
    for pid, pipeline in pipelines.items():
        if pid.split("/")[0] not in SIGNALS:
            errors.append(f"{where}: pipeline `{pid}`: unknown signal")
        for kind in ("receivers", "processors", "exporters"):
            names = (pipeline or {}).get(kind) or []
            if kind != "processors" and not names:
                errors.append(f"{where}: pipeline `{pid}` has no {kind}")
            for name in names:
                used[kind].add(name)
                if name not in (cfg.get(kind) or {}):
                    errors.append(f"{where}: pipeline `{pid}` names undefined {kind[:-1]} `{name}`")
        procs = (pipeline or {}).get("processors") or []
        if procs and procs[0].split("/")[0] != "memory_limiter":
            errors.append(f"{where}: pipeline `{pid}`: memory_limiter should be the first processor")
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for name in cfg.get(kind) or {}:
            if name not in used[kind]:
                errors.append(f"{where}: {kind[:-1]} `{name}` is defined but never used")
    # The exporters to Tarn: retries, persistent queue and batch sizes that match Tarn.
    tarn_exporters = [e for e in cfg.get("exporters") or {} if e.split("/")[0] in ("otlp", "otlphttp")]
    if not tarn_exporters:
        errors.append(f"{where}: no otlp/otlphttp exporter")
    for eid in tarn_exporters:
        exp = cfg["exporters"][eid] or {}
        kind = eid.split("/")[0]
        limit_flag = "grpc_max_message_bytes" if kind == "otlp" else "max_body_bytes"
        limit = flags[limit_flag]["default"]
        retry = exp.get("retry_on_failure") or {}
        queue = exp.get("sending_queue") or {}
        batch = queue.get("batch") or {}
        auth = str((exp.get("headers") or {}).get("authorization", ""))
        if not retry.get("enabled"):
            errors.append(f"{where}: {eid}: retry_on_failure must be enabled (Tarn answers 'try later')")
        if not queue.get("enabled"):
            errors.append(f"{where}: {eid}: sending_queue must be enabled")
        storage = queue.get("storage")
        if storage and storage not in used["extensions"]:
            errors.append(f"{where}: {eid}: sending_queue.storage `{storage}` is not an enabled extension")
        if storage and (storage.split("/")[0] != "file_storage"):
            errors.append(f"{where}: {eid}: sending_queue.storage should be a file_storage extension")
        if queue.get("sizer") != "bytes" or batch.get("sizer", queue.get("sizer")) != "bytes":
            errors.append(f"{where}: {eid}: queue and batch should size in bytes, as Tarn's limits do")
        max_size = batch.get("max_size")
        if not isinstance(max_size, int) or not 0 < max_size < limit:
            errors.append(f"{where}: {eid}: sending_queue.batch.max_size {max_size!r} must be below Tarn's "
                          f"--{limit_flag.replace('_', '-')} default {limit}")
        consumers = queue.get("num_consumers", 10)
        if isinstance(max_size, int) and consumers * max_size > flags["max_inflight_bytes"]["default"] // 4:
            errors.append(f"{where}: {eid}: num_consumers x max_size exceeds a quarter of Tarn's in-flight budget")
        if not re.fullmatch(r"Bearer \$\{env:[A-Z_]+\}", auth):
            errors.append(f"{where}: {eid}: headers.authorization must be 'Bearer ${{env:...}}'")
        compression = exp.get("compression", "gzip")
        accepted = {"gzip", "zstd", "none", ""} | ({"deflate"} if kind == "otlphttp" else set())
        if compression not in accepted:
            errors.append(f"{where}: {eid}: Tarn does not accept compression `{compression}`")
        for key in exp:
            if kind == "otlphttp" and key in GRPC_ONLY_KEYS:
                errors.append(f"{where}: {eid}: `{key}` is a gRPC-only key")
    return errors


def header_documents(path: Path, names: set[str]) -> list[str]:
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    return [f"{rel(path)}: ${{env:{n}}} is not described in the header comment" for n in sorted(names)
            if n not in header]


def otelcol_subset(cfg: dict) -> dict:
    """What the PyPI otelcol build (filelog receiver, batch/memory_limiter processors,
    otlphttp exporter, no extensions) can validate of a config: every exporter's
    retry/queue/batch/client settings (gRPC ones re-homed on otlphttp), the processors
    it knows, and service.telemetry verbatim."""
    out: dict = {"receivers": {"filelog/validate": {"include": ["/nonexistent/validate.log"]}},
                 "processors": {}, "exporters": {}, "service": {"pipelines": {}}}
    for pid, proc in (cfg.get("processors") or {}).items():
        if pid.split("/")[0] in ("memory_limiter", "batch"):
            out["processors"][pid] = proc
    for eid, exp in (cfg.get("exporters") or {}).items():
        exp = copy.deepcopy(exp or {})
        if "sending_queue" in exp:
            exp["sending_queue"].pop("storage", None)
        if eid.split("/")[0] == "otlp":
            for key in GRPC_ONLY_KEYS:
                exp.pop(key, None)
            exp["endpoint"] = "http://validate.invalid:4318"
            eid = "otlphttp/" + eid.replace("/", "_")
        out["exporters"][eid] = exp
    if "telemetry" in (cfg.get("service") or {}):
        out["service"]["telemetry"] = cfg["service"]["telemetry"]
    out["service"]["pipelines"]["logs"] = {
        "receivers": ["filelog/validate"],
        "processors": list(out["processors"]),
        "exporters": list(out["exporters"]),
    }
    return out


def check_collectors(report: Report, flags: dict, compose: dict) -> None:
    configs: dict[str, tuple[dict, Path | None]] = {}
    errors = []
    for path in sorted((DEPLOY / "collector").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        configs[rel(path)] = (cfg, path)
        refs = env_refs(cfg)
        errors += header_documents(path, {n for n in refs})
    # The compose stack's Collector: its --config files merged in order.
    service = compose["services"]["collector"]
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (DEPLOY / "compose" / source).resolve()
    merged: dict = {}
    files = []
    for arg in service.get("command", []):
        if arg.startswith("--config="):
            target = arg.split("=", 1)[1]
            if target not in mounts or not mounts[target].exists():
                errors.append(f"compose collector: --config {target} is not a mounted file")
                continue
            files.append(rel(mounts[target]))
            merged = merge(merged, yaml.safe_load(mounts[target].read_text()))
    configs["compose collector (" + " + ".join(files) + ")"] = (merged, None)
    env = service.get("environment", {})
    for name, has_default in env_refs(merged).items():
        if not has_default and name not in env:
            errors.append(f"compose collector: ${{env:{name}}} is not set in its environment")
    for where, (cfg, _) in configs.items():
        errors += collector_errors(cfg, flags, where)
    report.check(
        "collector structure",
        errors,
        f"{len(configs)} configs: known top-level keys and contrib component types, pipelines reference "
        "defined receivers/processors/exporters/extensions, nothing unused, memory_limiter first, Tarn "
        "exporters retry, persistent byte-sized queue with batches under Tarn's limits (cli.rs defaults), "
        "bearer key from env, env vars documented and set by compose",
    )
    otelcol = tool("OTELCOL")
    if not otelcol:
        report.skip("collector otelcol validate", "no otelcol binary (OTELCOL)")
        return
    version = run([otelcol, "--version"]).stdout.strip().split()[-1]
    image = compose["services"]["collector"]["image"].rsplit(":", 1)[1]
    errors = []
    if image.split(".")[:2] != version.split(".")[:2]:
        errors.append(f"compose pins collector {image} but the validating otelcol is {version}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (where, (cfg, _)) in enumerate(configs.items()):
            subset = otelcol_subset(cfg)
            path = Path(tmp) / f"config{i}.yaml"
            path.write_text(yaml.safe_dump(subset))
            dummy_env = {name: "validate" for name in env_refs(cfg)}
            proc = run([otelcol, "validate", f"--config={path}"], env={**os.environ, **dummy_env}, timeout=60)
            if proc.returncode != 0:
                msg = []
                for line in (proc.stderr or proc.stdout).strip().splitlines():
                    if re.match(r"^\d{4}/\d\d/\d\d ", line):
                        break  # the same error again, as a log line
                    if line.strip():
                        msg.append(line.strip())
                errors.append(f"{where}: " + " ".join(msg))
    report.check(
        "collector otelcol validate",
        errors,
        f"otelcol-contrib {version} `validate` on each config's exporters (retry_on_failure, sending_queue, "
        "batch, headers, compression, timeout; otlp re-homed on otlphttp), memory_limiter and "
        "service.telemetry; receivers, resourcedetection, extensions and gRPC-only keys are not in that build "
        "and are checked structurally only",
    )


# --- compose -----------------------------------------------------------------------------------


def check_compose(report: Report, flags: dict) -> dict:
    path = DEPLOY / "compose" / "compose.yaml"
    compose_bin = tool("COMPOSE")
    rendered = None
    if compose_bin:
        proc = run([compose_bin, "-f", str(path), "config", "--format", "json"], cwd=ROOT,
                   env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")})
        if proc.returncode != 0:
            report.fail("compose config", proc.stderr.strip())
        else:
            rendered = json.loads(proc.stdout)
            version = run([compose_bin, "version", "--short"]).stdout.strip()
            report.ok("compose config", f"docker compose {version} `config`: schema, interpolation, merge "
                      f"({len(rendered['services'])} services)")
    else:
        report.skip("compose config", "no docker compose binary (COMPOSE)")
    raw = yaml.safe_load(path.read_text())
    services = raw["services"]
    errors = []
    env_names = known_env(flags)
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" not in svc:
            tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
            if not tag or tag == "latest":
                errors.append(f"service {name}: image `{image}` is not pinned to a version tag")
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                errors.append(f"service {name}: port {port} is not bound to 127.0.0.1")
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not (path.parent / source).exists():
                errors.append(f"service {name}: bind mount source {source} does not exist")
    tarn = services["tarn"]
    build = tarn.get("build", {})
    if (path.parent / build.get("context", "")).resolve() != ROOT:
        errors.append("tarn: build context must be the repository root")
    if not (path.parent / build.get("context", "") / build.get("dockerfile", "")).resolve().exists():
        errors.append("tarn: build dockerfile does not exist")
    for var in tarn.get("environment", {}):
        if var.startswith(("TARN_", "MICROMEGAS_")) and var not in env_names:
            errors.append(f"tarn: environment variable {var} is not one Tarn reads (cli.rs)")
    grace = str(tarn.get("stop_grace_period", "10s"))
    seconds = int(grace[:-1]) * {"s": 1, "m": 60}[grace[-1]]
    if seconds < 60:
        errors.append(f"tarn: stop_grace_period {grace} leaves too little time for the final commit")
    published = {str(p).split(":")[-1] for p in tarn.get("ports", [])}
    for port in TARN_PORTS.values():
        if str(port) not in published:
            errors.append(f"tarn: container port {port} is not published")
    if rendered:
        keys = json.loads(rendered["services"]["tarn"]["environment"]["TARN_API_KEYS"])
        roles = {k["name"]: k["roles"] for k in keys}
        if roles != {"collector": ["ingest"], "grafana": ["query"]}:
            errors.append(f"tarn: TARN_API_KEYS renders to unexpected keys {roles}")
        env = rendered["services"]
        if env["collector"]["environment"]["TARN_API_KEY"] != keys[0]["key"]:
            errors.append("collector: TARN_API_KEY is not the collector's ingest key")
        if env["grafana"]["environment"]["TARN_QUERY_KEY"] != keys[1]["key"]:
            errors.append("grafana: TARN_QUERY_KEY is not Grafana's query key")
    report.check("compose semantics", errors,
                 "images pinned, ports on 127.0.0.1, bind mounts exist, build context/Dockerfile, TARN_* names "
                 "from cli.rs, Tarn ports published, stop grace period, API keys/roles wired to collector and "
                 "Grafana")
    return raw


# --- Grafana -----------------------------------------------------------------------------------

PLUGIN_MACROS = {"timeFrom", "timeTo", "timeRange", "timeRangeFrom", "timeRangeTo", "dateBin",
                 "dateBinAlias", "interval", "timeGroup", "timeGroupAlias", "timeFilter"}


def schema_tables() -> set[str]:
    return set(re.findall(r"^## `(\w+)`", SCHEMA_MD.read_text(), re.M))


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, SQL) of every provisioned dashboard."""
    out = []
    for path in sorted((DEPLOY / "compose" / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                out.append((path.name, panel.get("title", "?"), target.get("queryText", "")))
    return out


def check_grafana(report: Report, compose: dict) -> None:
    base = DEPLOY / "compose" / "grafana"
    errors = []
    grafana = compose["services"]["grafana"]
    env = grafana.get("environment", {})
    mounts = {v.split(":")[1]: (DEPLOY / "compose" / v.split(":")[0]).resolve()
              for v in grafana.get("volumes", []) if v.startswith(".")}
    uids = set()
    for path in sorted((base / "provisioning" / "datasources").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("apiVersion") != 1:
            errors.append(f"{rel(path)}: apiVersion must be 1")
        for ds in doc.get("datasources", []):
            uids.add(ds.get("uid"))
            if ds.get("type") != "influxdata-flightsql-datasource":
                continue
            plugin = env.get("GF_PLUGINS_PREINSTALL_SYNC", "")
            if not plugin.startswith(ds["type"] + "@"):
                errors.append(f"grafana: GF_PLUGINS_PREINSTALL_SYNC must install {ds['type']}@<version>")
            host, _, port = ds.get("jsonData", {}).get("host", "").partition(":")
            if host not in compose["services"] or port != str(TARN_PORTS["flightsql_port"]):
                errors.append(f"{rel(path)}: host must be <tarn service>:{TARN_PORTS['flightsql_port']}")
            if ds.get("jsonData", {}).get("secure") is not False:
                errors.append(f"{rel(path)}: Tarn's FlightSQL is plaintext: secure must be false")
            token = ds.get("secureJsonData", {}).get("token", "")
            var = token.lstrip("$").strip("{}")
            if var not in env:
                errors.append(f"{rel(path)}: token {token} is not set in Grafana's environment")
    for path in sorted((base / "provisioning" / "dashboards").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for provider in doc.get("providers", []):
            target = provider.get("options", {}).get("path")
            if target not in mounts:
                errors.append(f"{rel(path)}: dashboards path {target} is not a mount of the grafana service")
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        parent, _, name = home.rpartition("/")
        if parent not in mounts or not (mounts[parent] / name).exists():
            errors.append(f"grafana: home dashboard {home} is not a mounted file")
    tables = schema_tables()
    for path in sorted((base / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            errors.append(f"{path.name}: duplicate panel ids")
        for panel in dash.get("panels", []):
            if panel.get("datasource", {}).get("uid") not in uids:
                errors.append(f"{path.name}: panel {panel.get('title')}: datasource uid not provisioned")
            for target in panel.get("targets", []):
                sql = target.get("queryText", "")
                if target.get("datasource", {}).get("uid") not in uids:
                    errors.append(f"{path.name}: panel {panel.get('title')}: target datasource not provisioned")
                if not sql.strip():
                    errors.append(f"{path.name}: panel {panel.get('title')}: empty query")
                for table in re.findall(r"\bFROM\s+([A-Za-z_]\w*)", sql, re.I):
                    if table not in tables:
                        errors.append(f"{path.name}: panel {panel.get('title')}: no table `{table}` in docs/schema.md")
                for macro in re.findall(r"\$__(\w+)", sql):
                    if macro not in PLUGIN_MACROS:
                        errors.append(f"{path.name}: panel {panel.get('title')}: unknown macro $__{macro}")
    report.check("grafana", errors,
                 f"datasource provisioning (plugin installed, host tarn:50051, plaintext, token from env), "
                 f"dashboard provider path mounted, {len(dashboard_queries())} panel queries use provisioned "
                 "datasources, tables of docs/schema.md and the plugin's macros")


# --- Dockerfile --------------------------------------------------------------------------------


def check_dockerfile(report: Report, flags: dict) -> None:
    path = DEPLOY / "Dockerfile"
    text = path.read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instr = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln.strip() else "")
             for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    errors = []
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    rust_version = cargo["workspace"]["package"]["rust-version"]
    m = re.search(r"^ARG RUST_VERSION=(\S+)", text, re.M)
    if not m or not (m.group(1) == rust_version or m.group(1).startswith(rust_version + ".")):
        errors.append(f"ARG RUST_VERSION must match Cargo.toml rust-version {rust_version}")
    stages = set()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    for op, rest in instr:
        if op != "FROM":
            continue
        words = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda mm: args.get(mm.group(1), mm.group(0)), words[0])
        if "AS" in [w.upper() for w in words]:
            stages.add(words[-1].lower())
        if image.lower() in stages:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        if not tag or tag == "latest":
            errors.append(f"FROM {image}: not pinned to a version tag")
    if not re.search(r"cargo build --release --locked --package tarn-gateway", text):
        errors.append("the build must be `cargo build --release --locked --package tarn-gateway`")
    if "cargo chef cook" not in text:
        errors.append("no dependency-caching layer (cargo chef cook)")
    exposed = {int(p.split("/")[0]) for op, rest in instr if op == "EXPOSE" for p in rest.split()}
    if exposed != {flags[k]["default"] for k in TARN_PORTS}:
        errors.append(f"EXPOSE {sorted(exposed)} differs from the default ports in cli.rs")
    users = [rest.strip() for op, rest in instr if op == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append("the runtime stage must end with a non-root USER")
    if not any(op == "HEALTHCHECK" and "/health" in rest for op, rest in instr):
        errors.append("no HEALTHCHECK on /health")
    entry = [json.loads(rest) for op, rest in instr if op == "ENTRYPOINT"]
    if not entry or entry[-1] != ["tarn", "serve"]:
        errors.append('ENTRYPOINT must be ["tarn", "serve"]')
    if not any(op == "VOLUME" and "/var/lib/tarn" in rest for op, rest in instr):
        errors.append("no VOLUME /var/lib/tarn")
    if "TARN_DATA_DIR=/var/lib/tarn" not in text or "TARN_LISTEN=0.0.0.0" not in text:
        errors.append("the image must set TARN_DATA_DIR=/var/lib/tarn and TARN_LISTEN=0.0.0.0")
    ignore = ROOT / ".dockerignore"
    if not ignore.exists():
        errors.append("no .dockerignore at the repository root")
    else:
        patterns = [p.strip().rstrip("/") for p in ignore.read_text().splitlines()
                    if p.strip() and not p.startswith("#")]
        needed = ["Cargo.toml", "Cargo.lock"] + list(cargo["workspace"]["members"])
        for member in cargo["workspace"]["members"]:
            member_toml = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
            needed += [f"{member}/{t['path']}" for section in ("example", "bin", "bench", "test")
                       for t in member_toml.get(section, []) if "path" in t]
            needed += [f"{member}/examples"] if member_toml.get("example") else []
        for item in needed:
            for pat in patterns:
                if not pat.startswith("!") and (fnmatch.fnmatch(item, pat) or item.startswith(pat + "/")):
                    errors.append(f".dockerignore pattern `{pat}` excludes {item}, which the build needs")
        if "**/target" not in patterns and "target" not in patterns:
            errors.append(".dockerignore must exclude target/")
    report.check("dockerfile", errors,
                 f"Rust {rust_version} builder matches Cargo.toml, images pinned, cargo-chef dependency layer, "
                 "--locked release build of tarn-gateway, EXPOSE = cli.rs ports, non-root USER, HEALTHCHECK "
                 "/health, ENTRYPOINT tarn serve, VOLUME, .dockerignore keeps the workspace")
    hadolint = tool("HADOLINT")
    if not hadolint:
        report.skip("hadolint", "no hadolint binary (HADOLINT)")
        return
    proc = run([hadolint, "--no-color", str(path)])
    version = run([hadolint, "--version"]).stdout.strip().split()[-1]
    report.check("hadolint", [proc.stdout.strip() or proc.stderr.strip()] if proc.returncode else [],
                 f"hadolint {version}: no findings")


# --- Kubernetes --------------------------------------------------------------------------------


def k8s_quantity(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1000, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", str(q))
    return int(m.group(1)) * units.get(m.group(2), 1)


def check_k8s(report: Report, flags: dict) -> None:
    kubectl = tool("KUBECTL")
    if not kubectl:
        report.skip("k8s kustomize", "no kubectl (KUBECTL)")
        return
    proc = run([kubectl, "kustomize", str(DEPLOY / "k8s")])
    if proc.returncode != 0:
        report.fail("k8s kustomize", proc.stderr.strip())
        return
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    report.ok("k8s kustomize", f"`kubectl kustomize deploy/k8s` renders {len(docs)} objects")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(proc.stdout)
        rendered = f.name
    validator = tool("KUBERNETES_VALIDATE")
    if not validator:
        report.skip("k8s schema", "no kubernetes-validate (KUBERNETES_VALIDATE)")
    else:
        errors = []
        versions = ["1.30.0", "1.37.0"]
        for version in versions:
            p = run([validator, "--strict", "--quiet", "-k", version, rendered])
            if p.returncode != 0:
                errors.append(f"Kubernetes {version}: {(p.stdout + p.stderr).strip()}")
        report.check("k8s schema", errors, f"kubernetes-validate --strict against Kubernetes {' and '.join(versions)} "
                     "(unknown fields rejected)")
    os.unlink(rendered)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    errors = []
    sts = by_kind["StatefulSet"][0]
    pod = sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    container = next(c for c in pod["containers"] if c["name"] == "tarn")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if set(ports.values()) != set(TARN_PORTS.values()):
        errors.append(f"container ports {sorted(ports.values())} differ from Tarn's {sorted(TARN_PORTS.values())}")
    probes = {k: container.get(k, {}).get("httpGet", {}) for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe, path in (("livenessProbe", "/health"), ("startupProbe", "/health"), ("readinessProbe", "/ready")):
        get = probes[probe]
        if get.get("path") != path or ports.get(get.get("port"), get.get("port")) != TARN_PORTS["otlp_http_port"]:
            errors.append(f"{probe} must GET {path} on the OTLP/HTTP port")
    for svc in by_kind["Service"]:
        if {k: v for k, v in svc["spec"]["selector"].items()} != {k: labels[k] for k in svc["spec"]["selector"]}:
            errors.append(f"Service {svc['metadata']['name']}: selector does not match the pods")
        targets = {p["targetPort"] for p in svc["spec"]["ports"]}
        if targets != set(ports):
            errors.append(f"Service {svc['metadata']['name']}: target ports {sorted(targets)} != {sorted(ports)}")
    if sts["spec"]["serviceName"] not in {s["metadata"]["name"] for s in by_kind["Service"]
                                         if s["spec"].get("clusterIP") == "None"}:
        errors.append("the StatefulSet's serviceName must be a headless Service")
    pdb = by_kind["PodDisruptionBudget"][0]
    if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
        errors.append("the PodDisruptionBudget does not select the gateways")
    # The WAL volume.
    claims = {c["metadata"]["name"]: c for c in sts["spec"].get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if mounts.get("/var/lib/tarn") not in claims:
        errors.append("/var/lib/tarn (TARN_DATA_DIR in the image) must be a volumeClaimTemplate")
    # The configuration file and the Secret.
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args = container.get("args", [])
    config = {}
    if "--config" not in args:
        errors.append("the container must run `tarn serve --config <file>`")
    else:
        file = args[args.index("--config") + 1]
        directory, _, key = file.rpartition("/")
        vol = volumes.get(mounts.get(directory), {})
        cm = cms.get(vol.get("configMap", {}).get("name"))
        if not cm or key not in cm.get("data", {}):
            errors.append(f"--config {file} is not a key of a mounted ConfigMap")
        else:
            text = cm["data"][key]
            errors += check_toml_text(text, flags, complete=False, where=f"ConfigMap {cm['metadata']['name']}/{key}")
            config = tomllib.loads(text)
            for key in ("listen", "data_dir"):
                if key in config:
                    errors.append(f"ConfigMap tarn.toml sets `{key}`, which the image's environment overrides")
    for env in container.get("env", []):
        if env["name"].startswith(("TARN_", "MICROMEGAS_")) and env["name"] not in known_env(flags):
            errors.append(f"environment variable {env['name']} is not one Tarn reads (cli.rs)")
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"] not in secrets or ref["key"] not in secrets[ref["name"]].get("stringData", {})):
            errors.append(f"{env['name']}: Secret {ref['name']}/{ref['key']} is not defined")

    def setting(name):
        return config.get(name, flags[name]["default"])

    need = setting("max_inflight_bytes") + setting("max_fresh_bytes") + setting("query_memory_bytes") + GIB
    limit = k8s_quantity(container.get("resources", {}).get("limits", {}).get("memory", "0"))
    if limit < need:
        errors.append(f"memory limit {limit} < in-flight + fresh + query memory + 1 GiB = {need}")
    claim = claims.get(mounts.get("/var/lib/tarn"), {})
    size = k8s_quantity(claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", "0"))
    if size <= setting("max_wal_bytes"):
        errors.append(f"WAL volume {size} bytes is not above max_wal_bytes {setting('max_wal_bytes')}")
    pre = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < pause + 60:
        errors.append(f"terminationGracePeriodSeconds {grace} leaves under 60 s after the preStop pause for the final commit")
    sc = container.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") and "/tmp" not in mounts:
        errors.append("read-only root filesystem without a /tmp volume")
    report.check("k8s semantics", errors,
                 "ports, /health and /ready probes on 4318, Services and PDB select the gateways, headless "
                 "governing Service, WAL on a volumeClaimTemplate above max_wal_bytes, --config is a mounted "
                 "ConfigMap key with valid tarn.toml, Secret refs exist, TARN_* names from cli.rs, memory limit "
                 "covers in-flight + fresh + query memory + 1 GiB, grace period > preStop + 60 s")


# --- systemd -----------------------------------------------------------------------------------


def check_systemd(report: Report, flags: dict) -> None:
    unit = DEPLOY / "systemd" / "tarn.service"
    text = unit.read_text()
    errors = []
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            settings.setdefault(k.strip(), []).append(v.strip())
    exec_start = settings.get("ExecStart", [""])[0].split()
    if exec_start[:2] != ["/usr/local/bin/tarn", "serve"]:
        errors.append("ExecStart must run /usr/local/bin/tarn serve")
    for key, want in (("KillSignal", "SIGTERM"), ("Restart", "on-failure"), ("StateDirectory", "tarn")):
        if settings.get(key, [""])[-1] != want:
            errors.append(f"{key} must be {want}")
    stop = settings.get("TimeoutStopSec", ["90"])[-1]
    if int(re.sub(r"s$", "", stop)) < 60:
        errors.append("TimeoutStopSec leaves too little time for the final commit")
    env_file = DEPLOY / "systemd" / "tarn.env"
    for n, line in enumerate(env_file.read_text().splitlines(), 1):
        body = line.lstrip("#").strip()
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=", body)
        if line.strip() and not line.startswith("#") and not m:
            errors.append(f"tarn.env:{n}: not KEY=VALUE")
        if m and m.group(1).startswith(("TARN_", "MICROMEGAS_")) and m.group(1) not in known_env(flags):
            errors.append(f"tarn.env:{n}: {m.group(1)} is not a variable Tarn reads (cli.rs)")
    report.check("systemd static", errors, "ExecStart tarn serve, KillSignal=SIGTERM, TimeoutStopSec >= 60, "
                 "Restart=on-failure, StateDirectory, tarn.env is KEY=VALUE with TARN_* names from cli.rs")
    analyze = tool("SYSTEMD_ANALYZE")
    if not analyze:
        report.skip("systemd-analyze", "no systemd-analyze")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # `verify` fails unless ExecStart's program exists; it is installed at
        # /usr/local/bin/tarn only on a real host, so the copy verified here runs a stub
        # executable instead. Everything else in the unit is verified as written.
        stub = Path(tmp) / "tarn"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        copy_unit = Path(tmp) / "tarn.service"
        copy_unit.write_text(text.replace("ExecStart=/usr/local/bin/tarn", f"ExecStart={stub}"))
        proc = run([analyze, "verify", str(copy_unit)], cwd=tmp)
        out = (proc.stdout + proc.stderr).strip()
        version = run([analyze, "--version"]).stdout.split("\n")[0]
        report.check("systemd-analyze verify", [out or f"exit {proc.returncode}"] if proc.returncode or out else [],
                     f"{version}: no warnings (ExecStart path swapped for a stub, the rest as written)")
        # --threshold is in tenths of the displayed exposure: 20 fails above 2.0 ("OK").
        proc = run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy_unit)], cwd=tmp)
        score = re.search(r"exposure level for \S+: ([0-9.]+)", proc.stdout)
        report.check("systemd-analyze security",
                     [] if proc.returncode == 0 else [f"exposure {score.group(1) if score else '?'} above 2.0"],
                     f"exposure {score.group(1) if score else '?'} (systemd's scale, 0-10) is at most 2.0")


# --- live: a real tarn -------------------------------------------------------------------------


def _expand_macros(sql: str, start: datetime.datetime, end: datetime.datetime, interval_s: int) -> str:
    """The FlightSQL plugin's macro expansion (pkg/flightsql/macro.go, grafana-plugin-sdk sqlutil)."""
    rfc = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    sql = sql.replace("$__timeFrom", f"cast('{rfc(start)}' as timestamp)")
    sql = sql.replace("$__timeTo", f"cast('{rfc(end)}' as timestamp)")
    sql = sql.replace("$__interval", f"interval '{interval_s} second'")
    sql = re.sub(r"\$__dateBin\(([^)]+)\)",
                 lambda m: f"date_bin(interval '{interval_s} second', {m.group(1)}, timestamp '1970-01-01T00:00:00Z')",
                 sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} >= '{rfc(start)}' AND {m.group(1)} <= '{rfc(end)}'", sql)
    return sql


def _sample_requests(now_ns: int) -> dict[str, dict]:
    """OTLP/JSON shaped like what the compose stack sends: host metrics, the Collector's
    own metrics, logs and spans."""
    res = lambda name: {"attributes": [{"key": "service.name", "value": {"stringValue": name}},  # noqa: E731
                                      {"key": "host.name", "value": {"stringValue": "validate-host"}}]}
    t = str(now_ns)
    gauge = lambda v, attrs: {"timeUnixNano": t, "asDouble": v,  # noqa: E731
                              "attributes": [{"key": k, "value": {"stringValue": s}} for k, s in attrs.items()]}
    metrics = [
        {"name": "system.cpu.utilization", "unit": "1", "gauge": {"dataPoints": [gauge(0.25, {"cpu": "cpu0", "state": "user"})]}},
        {"name": "system.memory.usage", "unit": "By", "sum": {"aggregationTemporality": 2, "dataPoints": [gauge(1e9, {"state": "used"})]}},
        {"name": "system.cpu.load_average.1m", "unit": "{thread}", "gauge": {"dataPoints": [gauge(0.5, {})]}},
        {"name": "otelcol_exporter_sent_spans", "unit": "{span}", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
                                                                          "dataPoints": [gauge(42, {"exporter": "otlp/tarn"})]}},
        {"name": "http.server.request.duration", "unit": "s", "histogram": {"aggregationTemporality": 2, "dataPoints": [
            {"timeUnixNano": t, "count": "3", "sum": 0.3, "bucketCounts": ["1", "2"], "explicitBounds": [0.1]}]}},
    ]
    return {
        "metrics": {"resourceMetrics": [
            {"resource": res("otelcol-contrib"), "scopeMetrics": [{"scope": {"name": "validate"}, "metrics": metrics}]},
            {"resource": res("tarn"), "scopeMetrics": [{"scope": {"name": "validate"}, "metrics": [
                {"name": "tarn_ingested_records_total", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
                                                                "dataPoints": [gauge(7, {})]}}]}]}]},
        "logs": {"resourceLogs": [{"resource": res("otelcol-contrib"), "scopeLogs": [{"scope": {"name": "validate"}, "logRecords": [
            {"timeUnixNano": t, "severityNumber": 13, "severityText": "WARN", "body": {"stringValue": "validate log"}}]}]}]},
        "traces": {"resourceSpans": [{"resource": res("otelcol-contrib"), "scopeSpans": [{"scope": {"name": "validate"}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "validate",
             "kind": 3, "startTimeUnixNano": t, "endTimeUnixNano": str(now_ns + 5_000_000), "status": {"code": 2}}]}]}]},
    }


class Tarn:
    """A tarn serve on loopback with free ports, stopped on exit."""

    def __init__(self, binary: str, data: Path, extra: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1", "--data-dir", str(data), "--otlp-grpc-port", "0",
             "--otlp-http-port", "0", "--native-port", "0", "--flightsql-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=open(data.parent / f"{data.name}.stderr", "w"), text=True,
            env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        if not line.startswith("tarn ready"):
            self.proc.wait(timeout=30)
            raise RuntimeError((data.parent / f"{data.name}.stderr").read_text()[-2000:])
        self.addr = dict(item.split("=", 1) for item in line.split()[2:])

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        return time.monotonic() - started


def check_live(report: Report, flags: dict, binary: str) -> None:
    help_text = run([binary, "serve", "--help"]).stdout
    keys = [{"name": "collector", "key": "validate-ingest", "roles": ["ingest"]},
            {"name": "grafana", "key": "validate-query", "roles": ["query"]}]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Both configuration files, read by the real parser (flags override what must differ here).
        if "--config" in help_text:
            errors = []
            cm = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]["tarn.toml"]
            (tmp / "k8s.toml").write_text(cm)
            for name, path, extra in (
                ("deploy/tarn.toml", DEPLOY / "tarn.toml", []),
                ("k8s ConfigMap tarn.toml", tmp / "k8s.toml", ["--object-store", f"file://{tmp}/k8s-lake"]),
            ):
                try:
                    Tarn(binary, tmp / f"cfg{len(errors)}{name[:3]}", ["--config", str(path), *extra],
                         {"TARN_API_KEYS": json.dumps(keys)}).stop()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{name}: tarn serve --config refused it: {e}")
            report.check("live config files", errors, "`tarn serve --config` starts with deploy/tarn.toml and "
                         "the k8s ConfigMap's tarn.toml")
        else:
            report.note("live config files", "not run: this tarn has no --config flag yet")
        tarn = Tarn(binary, tmp / "data", ["--api-keys", json.dumps(keys)])
        errors = []
        try:
            now = datetime.datetime.now(datetime.timezone.utc)
            for signal_name, body in _sample_requests(time.time_ns()).items():
                req = urllib.request.Request(
                    f"http://{tarn.addr['otlp_http']}/v1/{signal_name}", data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json", "Authorization": "Bearer validate-ingest"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    if resp.status != 200:
                        errors.append(f"POST /v1/{signal_name}: {resp.status}")
            start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(minutes=5)
            empty = []
            for dash, title, sql in dashboard_queries():
                expanded = _expand_macros(sql, start, end, 30)
                if "$__" in expanded:
                    errors.append(f"{dash} / {title}: macro left unexpanded")
                    continue
                proc = run([binary, "query", "--url", f"grpc://{tarn.addr['flightsql']}", "--api-key", "validate-query",
                            "--format", "json", expanded], timeout=120)
                if proc.returncode != 0:
                    errors.append(f"{dash} / {title}: {proc.stderr.strip()[-500:]}")
                elif not proc.stdout.strip():
                    empty.append(title)
            if empty:
                errors.append(f"panels returned no rows on the sample data: {', '.join(empty)}")
            health = urllib.request.urlopen(f"http://{tarn.addr['otlp_http']}/health", timeout=10).status
            if health != 200:
                errors.append(f"/health answered {health}")
        finally:
            seconds = tarn.stop()
        report.check("live dashboard", errors,
                     f"{len(dashboard_queries())} dashboard queries (plugin macros expanded) run on {binary} over "
                     f"FlightSQL with the query key and return rows from sample OTLP data; SIGTERM exit in {seconds:.1f} s")
        # The image's HEALTHCHECK command, against a live listener.
        df = (DEPLOY / "Dockerfile").read_text()
        cmd = json.loads(re.search(r"CMD (\[.*\])\s*$", re.sub(r"\\\n", " ", df.split("HEALTHCHECK", 1)[1]),
                                   re.M).group(1))
        tarn = Tarn(binary, tmp / "hc", ["--api-keys", json.dumps(keys)])
        try:
            port = tarn.addr["otlp_http"].rsplit(":", 1)[1]
            # In the image `tarn` is on PATH; here it is the binary under test.
            path = f"{os.path.dirname(os.path.abspath(binary))}{os.pathsep}{os.environ.get('PATH', '')}"
            env = {**os.environ, "TARN_OTLP_HTTP_PORT": port, "PATH": path}
            ok = run(cmd, env=env, timeout=10).returncode == 0
        finally:
            tarn.stop()
        bad = run(cmd, env=env, timeout=10).returncode != 0
        report.check("live healthcheck", [] if ok and bad else [f"HEALTHCHECK command: up={ok}, detects down={bad}"],
                     "the Dockerfile's HEALTHCHECK command succeeds against a running tarn and fails once it stopped")


def check_live_collector(report: Report, binary: str, otelcol: str) -> None:
    """deploy/collector/otlp-http.yaml's exporter and telemetry settings, run by a real
    otelcol against a real tarn that is made to push back (503 + Retry-After)."""
    keys = [{"name": "collector", "key": "validate-ingest", "roles": ["ingest"]},
            {"name": "grafana", "key": "validate-query", "roles": ["query"]}]
    lines = 1500
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # One byte of uncommitted rows and a 2 s commit interval: after each accepted
        # request Tarn answers "try later" until the flusher has committed it.
        tarn = Tarn(binary, tmp / "data", ["--api-keys", json.dumps(keys), "--max-fresh-bytes", "1",
                                           "--flush-interval-secs", "2"])
        collector = None
        started = elapsed = time.monotonic()
        try:
            cfg = yaml.safe_load((DEPLOY / "collector" / "otlp-http.yaml").read_text())
            sub = otelcol_subset(cfg)
            log = tmp / "app.log"
            log.write_text("")
            sub["receivers"] = {"filelog/validate": {"include": [str(log)], "start_at": "beginning"}}
            # The Collector's own metrics every 2 s instead of 15 s, not to wait here.
            for reader in sub["service"]["telemetry"]["metrics"].get("readers", []):
                if "periodic" in reader:
                    reader["periodic"]["interval"] = 2000
            (tmp / "collector.yaml").write_text(yaml.safe_dump(sub))
            env = {**os.environ, "TARN_OTLP_HTTP_ENDPOINT": f"http://{tarn.addr['otlp_http']}",
                   "TARN_API_KEY": "validate-ingest"}
            collector = subprocess.Popen([otelcol, f"--config={tmp / 'collector.yaml'}"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=open(tmp / "collector.log", "w"))
            for chunk in range(3):
                with log.open("a") as f:
                    for i in range(lines // 3):
                        f.write(f"validate-line {chunk * (lines // 3) + i}\n")
                time.sleep(1.5)

            def scalar(sql: str) -> int:
                proc = run([binary, "query", "--url", f"grpc://{tarn.addr['flightsql']}", "--api-key",
                            "validate-query", "--format", "csv", sql], timeout=60)
                return int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else -1

            started = time.monotonic()
            # Retries back off up to max_interval (30 s), and a retry that arrives while
            # another request (the Collector's own metrics, every 2 s) has taken the one
            # byte of room is refused again: seen once to need more than 150 s.
            deadline = started + 300
            rows = distinct = own = 0
            while time.monotonic() < deadline:
                rows = scalar("SELECT count(*) FROM log_entries WHERE msg LIKE 'validate-line %'")
                distinct = scalar("SELECT count(DISTINCT msg) FROM log_entries WHERE msg LIKE 'validate-line %'")
                own = scalar("SELECT count(*) FROM measures WHERE name LIKE 'otelcol_exporter_sent%'")
                if rows >= lines and own > 0:
                    break
                time.sleep(1)
            elapsed = time.monotonic() - started
            retries = (tmp / "collector.log").read_text().count("Will retry the request after interval")
            if rows != lines or distinct != lines:
                errors.append(f"Tarn holds {rows} rows ({distinct} distinct) of the {lines} lines the Collector read")
            if own <= 0:
                errors.append("the Collector's own metrics (service.telemetry) did not reach Tarn")
            if retries == 0:
                errors.append("Tarn never pushed back, so the retry path was not exercised")
        finally:
            if collector:
                # Its shutdown would retry its last self-telemetry against a Tarn that is
                # still pushing back: not what is tested here.
                collector.send_signal(signal.SIGTERM)
                try:
                    collector.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    collector.kill()
                    collector.wait()
            tarn.stop()
        if errors:
            tail = (tmp / "collector.log").read_text().strip().splitlines()[-5:]
            errors.append("collector log tail: " + " | ".join(tail))
    report.check("live collector", errors,
                 f"a real otelcol with otlp-http.yaml's exporter settings delivers {lines} log lines to a tarn "
                 f"answering 503 + Retry-After, exactly once each after {retries} retries, and its own metrics "
                 f"arrive through service.telemetry (in {elapsed:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strict", action="store_true", help="a missing validator is a failure (CI)")
    args = parser.parse_args()
    report = Report(args.strict)
    started = time.monotonic()
    flags = serve_flags()
    drift = [f"{port}={flags.get(port, {}).get('default')!r}" for port, default in TARN_PORTS.items()
             if flags.get(port, {}).get("default") != default]
    if len(flags) < 10 or drift:
        report.fail("cli.rs", f"could not read the `tarn serve` flags from {rel(CLI_RS)} as expected "
                    f"({len(flags)} flags; ports {drift}): update deploy/validate/checks.py")
        return 1
    check_parse(report)
    check_tarn_toml(report, flags)
    check_dockerfile(report, flags)
    compose = check_compose(report, flags)
    check_collectors(report, flags, compose)
    check_grafana(report, compose)
    check_k8s(report, flags)
    check_systemd(report, flags)
    binary = os.environ.get("TARN_BIN")
    if binary:
        copied = Path(tempfile.mkdtemp()) / "tarn"
        shutil.copy2(binary, copied)  # the original may be rebuilt under us
        try:
            check_live(report, flags, str(copied))
            otelcol = tool("OTELCOL")
            if otelcol:
                check_live_collector(report, str(copied), otelcol)
            else:
                report.skip("live collector", "no otelcol binary (OTELCOL)")
        finally:
            shutil.rmtree(copied.parent, ignore_errors=True)
    else:
        report.note("live", "not run: the live checks (dashboard SQL, HEALTHCHECK, Collector against Tarn's "
                    "backpressure, --config files) need TARN_BIN=<path to a tarn binary>")
    print(f"deploy-validate: {report.passed} passed, {report.failed} failed, {report.skipped} skipped "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
