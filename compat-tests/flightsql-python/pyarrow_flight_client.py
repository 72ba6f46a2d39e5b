"""Speaks FlightSQL to Tarn with plain `pyarrow.flight` (23.0.1) and prints one JSON line.

The FlightSQL protobufs are encoded by hand (a few length-delimited fields wrapped in
`google.protobuf.Any`), so no FlightSQL library is involved.

usage: pyarrow_flight_client.py URI CALL [ARG] [--begin VALUE] [--end VALUE]
  URI   grpc://127.0.0.1:PORT
  CALL  flight_info SQL  GetFlightInfo(Any(CommandStatementQuery{query=SQL})), then DoGet of
                         every endpoint's ticket (on this connection)
        ticket SQL       DoGet(Any(TicketStatementQuery{statement_handle=SQL})) directly
        prepared SQL     the ADBC sequence by hand: DoAction CreatePreparedStatement,
                         GetFlightInfo(CommandPreparedStatementQuery), DoGet, DoAction
                         ClosePreparedStatement
        get_schema SQL   GetSchema(CommandStatementQuery{query=SQL})
        command NAME     GetFlightInfo + DoGet of a metadata command with default fields:
                         GetSqlInfo GetCatalogs GetDbSchemas GetTables GetTableTypes
                         GetXdbcTypeInfo GetPrimaryKeys GetExportedKeys GetImportedKeys
                         GetCrossReference (key commands name the table `spans`)
        action NAME      DoAction NAME: CloseSession and GetSessionOptions (Flight session
                         actions, empty request messages), BeginTransaction (Any-wrapped
                         empty ActionBeginTransactionRequest), any other name with an empty
                         body; prints the result bodies in hex
        list_actions     ListActions
        survey           every call above once (SQL: SELECT 1 AS one), one entry each:
                         {"ok": true, "num_rows": N} or {"ok": false, "error": "..."}
  --begin/--end  sent verbatim as the query_range_begin/query_range_end headers

The JSON line: {"client", "call", "columns", "types", "num_rows", "rows"} (+ "endpoints"
for flight_info, "handle"/"dataset_schema" for prepared, "results" for actions); on failure
{"client", "call", "error"} and exit code 1.
"""

import argparse

import pyarrow as pa
import pyarrow.flight as flight

from common import arrow_result, emit, error_text

SQL_TYPE = "type.googleapis.com/arrow.flight.protocol.sql."


# --- protobuf by hand --------------------------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field (wire type 2): strings, bytes, messages."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def any_of(message, body=b""):
    """google.protobuf.Any{type_url=1, value=2} of a FlightSQL message."""
    return field(1, SQL_TYPE + message) + field(2, body)


def decode(buf):
    """{field number: [values]} of one message level (varints as int, the rest as bytes)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            size, i = read_varint(buf, i)
            value, i = bytes(buf[i:i + size]), i + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = bytes(buf[i:i + width]), i + width
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def unpack_any(buf, message):
    fields = decode(buf)
    type_url = fields.get(1, [b""])[0].decode()
    if type_url != SQL_TYPE + message:
        raise ValueError(f"expected Any({message}), got {type_url!r}")
    return decode(fields.get(2, [b""])[0])


# Metadata commands: message name -> body with default fields.
COMMANDS = {
    "GetSqlInfo": b"",
    "GetCatalogs": b"",
    "GetDbSchemas": b"",
    "GetTables": field_varint(5, 1),  # include_schema = true
    "GetTableTypes": b"",
    "GetXdbcTypeInfo": b"",
    "GetPrimaryKeys": field(3, "spans"),
    "GetExportedKeys": field(3, "spans"),
    "GetImportedKeys": field(3, "spans"),
    "GetCrossReference": field(3, "spans") + field(6, "log_entries"),
}

# Actions: type -> body.
ACTIONS = {
    "CloseSession": b"",  # CloseSessionRequest{}, a plain Flight message
    "GetSessionOptions": b"",  # GetSessionOptionsRequest{}
    "BeginTransaction": any_of("ActionBeginTransactionRequest"),
}


# --- calls -------------------------------------------------------------------------------
class Client:
    def __init__(self, uri, headers):
        self.flight = flight.FlightClient(uri)
        self.options = flight.FlightCallOptions(headers=headers, timeout=120)

    def read_info(self, info):
        """DoGet every endpoint of a FlightInfo, on this connection (Tarn sends no location)."""
        tables = [self.flight.do_get(ep.ticket, self.options).read_all() for ep in info.endpoints]
        table = pa.concat_tables(tables) if tables else info.schema.empty_table()
        locations = [[str(loc) for loc in ep.locations] for ep in info.endpoints]
        return {**arrow_result(table), "endpoints": len(info.endpoints), "locations": locations,
                "info_schema_types": [str(t) for t in info.schema.types]}

    def flight_info(self, sql):
        descriptor = flight.FlightDescriptor.for_command(any_of("CommandStatementQuery", field(1, sql)))
        return self.read_info(self.flight.get_flight_info(descriptor, self.options))

    def ticket(self, sql):
        ticket = flight.Ticket(any_of("TicketStatementQuery", field(1, sql)))
        return arrow_result(self.flight.do_get(ticket, self.options).read_all())

    def prepared(self, sql):
        action = flight.Action("CreatePreparedStatement",
                               any_of("ActionCreatePreparedStatementRequest", field(1, sql)))
        results = list(self.flight.do_action(action, self.options))
        created = unpack_any(results[0].body.to_pybytes(), "ActionCreatePreparedStatementResult")
        handle = created[1][0]
        dataset_schema = pa.ipc.read_schema(pa.py_buffer(created[2][0])) if 2 in created else None
        descriptor = flight.FlightDescriptor.for_command(
            any_of("CommandPreparedStatementQuery", field(1, handle)))
        result = self.read_info(self.flight.get_flight_info(descriptor, self.options))
        close = flight.Action("ClosePreparedStatement",
                              any_of("ActionClosePreparedStatementRequest", field(1, handle)))
        list(self.flight.do_action(close, self.options))
        return {**result, "handle": handle.decode(errors="replace"),
                "has_parameter_schema": 3 in created,
                "dataset_schema": None if dataset_schema is None else [str(t) for t in dataset_schema.types]}

    def get_schema(self, sql):
        descriptor = flight.FlightDescriptor.for_command(any_of("CommandStatementQuery", field(1, sql)))
        schema = self.flight.get_schema(descriptor, self.options).schema
        return {"columns": schema.names, "types": [str(t) for t in schema.types], "num_rows": 0, "rows": []}

    def command(self, name):
        descriptor = flight.FlightDescriptor.for_command(any_of("Command" + name, COMMANDS[name]))
        result = self.read_info(self.flight.get_flight_info(descriptor, self.options))
        if name == "GetTables":  # table_schema is an IPC schema: show its column names instead
            i = result["columns"].index("table_schema")
            for row in result["rows"]:
                row[i] = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(row[i]))).names
        return result

    def action(self, name):
        action = flight.Action(name, ACTIONS.get(name, b""))
        results = list(self.flight.do_action(action, self.options))
        return {"results": [r.body.to_pybytes().hex() for r in results], "num_rows": len(results)}

    def list_actions(self):
        actions = list(self.flight.list_actions(self.options))
        return {"columns": ["type", "description"], "types": ["string", "string"],
                "num_rows": len(actions), "rows": [[a.type, a.description] for a in actions]}

    def survey(self):
        sql = "SELECT 1 AS one"
        calls = {name: (lambda name=name: getattr(self, name)(sql))
                 for name in ["flight_info", "ticket", "prepared", "get_schema"]}
        calls.update({f"command {n}": (lambda n=n: self.command(n)) for n in COMMANDS})
        calls.update({f"action {n}": (lambda n=n: self.action(n)) for n in ACTIONS})
        calls["list_actions"] = self.list_actions
        report = {}
        for name, call in calls.items():
            try:
                report[name] = {"ok": True, "num_rows": call()["num_rows"]}
            except Exception as exc:  # noqa: BLE001 - reported
                report[name] = {"ok": False, "error": error_text(exc)}
        return {"calls": report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("call", choices=["flight_info", "ticket", "prepared", "get_schema",
                                         "command", "action", "list_actions", "survey"])
    parser.add_argument("arg", nargs="?")
    parser.add_argument("--begin")
    parser.add_argument("--end")
    args = parser.parse_args()
    headers = [(b"query_range_" + k.encode(), v.encode())
               for k, v in (("begin", args.begin), ("end", args.end)) if v]
    head = {"client": "pyarrow.flight", "call": args.call}
    try:
        client = Client(args.uri, headers)
        method = getattr(client, args.call)
        result = method(args.arg) if args.arg is not None else method()
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        emit({**head, "error": error_text(exc)}, 1)
    emit({**head, **({"arg": args.arg} if args.arg else {}), **result})


if __name__ == "__main__":
    main()
