"""An Arrow Flight SQL client that Ember did not write, for Ember's tests.

Connects to a scheduler with the ADBC Flight SQL driver (PyPI's
adbc-driver-flightsql), runs what the test asks for and writes the answers
where the test reads them:

    adbc_client.py REQUEST.json OUT_DIR

REQUEST.json holds: "uri" (grpc:// or grpc+tls://), "user", "password"
(the cluster's token as the handshake's password, or null for none),
"bearer" (the token sent as a fixed "authorization: Bearer" header
instead of the handshake), "tls_root_certs" (PEM text, or null), "setup"
(statements run first, such as CREATE EXTERNAL TABLE), "queries" ({name:
sql}: each answer written as OUT_DIR/name.arrow), "prepared" (a list of
{name, sql, parameters}: the statement prepared, its parameters bound, the
answer written as OUT_DIR/name.arrow; a parameter is a JSON value, or
{"date": ISO text} or {"decimal": text}), "cancel" ({sql, after_seconds}:
the query started, then cancelled with adbc_cancel) and "frames" (a query
read into pandas and into Polars). OUT_DIR/report.json gets the tables
adbc_get_objects lists, the prepared statements' parameter types, how the
cancelled query ended, the frames' shapes and sums, and, when the
connection is refused, the refusal.
"""

import datetime
import decimal
import json
import os
import pathlib
import sys
import threading
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import polars
import pyarrow


def connect(request):
    options = {}
    if request.get("bearer") is not None:
        options[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = (
            "Bearer " + request["bearer"]
        )
    if request.get("password") is not None:
        options["username"] = request["user"]
        options["password"] = request["password"]
    if request.get("tls_root_certs"):
        options[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = request[
            "tls_root_certs"
        ]
    return flight_sql.connect(request["uri"], db_kwargs=options)


def table_names(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = []
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                names.append(f'{schema["db_schema_name"]}.{table["table_name"]}')
    return sorted(names)


def parameter(spec):
    if isinstance(spec, dict) and "date" in spec:
        return datetime.date.fromisoformat(spec["date"])
    if isinstance(spec, dict) and "decimal" in spec:
        return decimal.Decimal(spec["decimal"])
    return spec


def write_arrow(path, table):
    with pyarrow.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def run_prepared(conn, statements, out):
    """Prepares each statement, binds its parameters and runs it; returns
    the parameter types the server declared, per statement."""
    types = {}
    for statement in statements:
        cursor = conn.cursor()
        schema = cursor.adbc_prepare(statement["sql"])
        types[statement["name"]] = [str(field.type) for field in schema] if schema else []
        values = tuple(parameter(p) for p in statement["parameters"])
        cursor.execute(statement["sql"], parameters=values)
        write_arrow(out / f'{statement["name"]}.arrow', cursor.fetch_arrow_table())
        cursor.close()
    return types


def run_cancelled(conn, cancel):
    """Starts a query, cancels it after a while, and says how it ended."""
    cursor = conn.cursor()
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            cursor.execute(cancel["sql"])
            cursor.fetch_arrow_table()
            outcome["error"] = None
        except Exception as error:  # the cancellation is what the test checks
            outcome["error"] = f"{type(error).__name__}: {error}"
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(cancel["after_seconds"])
    cursor.adbc_cancel()
    worker.join(timeout=120)
    outcome["finished"] = not worker.is_alive()
    return outcome


def main():
    request = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    try:
        conn = connect(request)
        cursor = conn.cursor()
        for statement in request.get("setup", []):
            cursor.execute(statement)
            cursor.fetch_arrow_table()
    except Exception as error:  # the refusal is what the test checks
        report["refused"] = str(error)
        (out / "report.json").write_text(json.dumps(report))
        return
    for name, sql in request.get("queries", {}).items():
        cursor.execute(sql)
        write_arrow(out / f"{name}.arrow", cursor.fetch_arrow_table())
    report["tables"] = table_names(conn)
    if request.get("prepared"):
        report["parameter_types"] = run_prepared(conn, request["prepared"], out)
    if request.get("cancel"):
        report["cancel"] = run_cancelled(conn, request["cancel"])
        (out / "report.json").write_text(json.dumps(report))
        sys.stdout.flush()
        # A query that would not stop must not keep this process alive.
        os._exit(0)
    frames = request.get("frames")
    if frames:
        cursor.execute(frames["sql"])
        frame = cursor.fetch_df()
        column = frames["sum_column"]
        report["pandas"] = {"rows": len(frame), "sum": float(frame[column].sum())}
        cursor.execute(frames["sql"])
        frame = polars.from_arrow(cursor.fetch_arrow_table())
        report["polars"] = {"rows": frame.height, "sum": float(frame[column].sum())}
    cursor.close()
    conn.close()
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
