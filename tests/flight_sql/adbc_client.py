"""An Arrow Flight SQL client that Ember did not write, for Ember's tests.

Connects to a scheduler with the ADBC Flight SQL driver (PyPI's
adbc-driver-flightsql), runs what the test asks for and writes the answers
where the test reads them:

    adbc_client.py REQUEST.json OUT_DIR

REQUEST.json holds: "uri" (grpc:// or grpc+tls://), "user", "password"
(the cluster's token, or null for none), "tls_root_certs" (PEM text, or
null), "setup" (statements run first, such as CREATE EXTERNAL TABLE),
"queries" ({name: sql}: each answer written as OUT_DIR/name.arrow), and
"frames" (a query read into pandas and into Polars). OUT_DIR/report.json
gets the tables adbc_get_objects lists, the frames' shapes and sums, and,
when the connection is refused, the refusal.
"""

import json
import pathlib
import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import polars
import pyarrow


def connect(request):
    options = {}
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
        table = cursor.fetch_arrow_table()
        with pyarrow.ipc.new_file(str(out / f"{name}.arrow"), table.schema) as writer:
            writer.write_table(table)
    report["tables"] = table_names(conn)
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
