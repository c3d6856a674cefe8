#!/usr/bin/env python3
"""Runs custom-query SQL on chDB (the current ClickHouse engine, in-process).

Used by crates/query-api/tests/custom_query.rs. Reads one JSON object on stdin:

    {"rows": "<JSONEachRow lines for the events table>", "setup": ["INSERT ...", ...], "queries": ["SELECT ...", ...]}

creates a throw-away database, applies schemas/clickhouse/*.sql (split exactly
as schemas/check_chdb.py splits them), inserts the rows, runs the setup
statements if any (aggregator-cron's rollup of the rows' hours), runs each
query with the JSONCompact output format (as the service asks ClickHouse for
it) and prints {"results": ["<JSONCompact text>", ...]} on stdout. Any failure exits
non-zero with the engine's error and the statement; a missing chdb module is
an error too, never a skip.
"""

import importlib.util
import json
import pathlib
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"


def fail(message):
    print(f"chdb_queries: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def load_splitter():
    spec = importlib.util.spec_from_file_location("check_chdb", SCHEMAS / "check_chdb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.split_statements


def main():
    request = json.load(sys.stdin)
    try:
        from chdb import session as chdb_session
    except ImportError as err:
        fail(f"cannot import chdb ({err}); install it with: pip install chdb-core")

    split_statements = load_splitter()
    database = f"chdb_queries_{uuid.uuid4().hex}"
    sess = chdb_session.Session()
    try:
        sess.query(f"CREATE DATABASE {database}")
        sess.query(f"USE {database}")
        for path in sorted((SCHEMAS / "clickhouse").glob("*.sql")):
            for statement in split_statements(path.read_text(encoding="utf-8")):
                try:
                    sess.query(statement)
                except Exception as err:  # chdb raises its own error types
                    fail(f"{path.name}: {err}\n--- statement ---\n{statement}")
        if request["rows"]:
            try:
                sess.query("INSERT INTO events FORMAT JSONEachRow\n" + request["rows"])
            except Exception as err:
                fail(f"inserting the rows: {err}")
        for number, statement in enumerate(request.get("setup", []), start=1):
            try:
                sess.query(statement)
            except Exception as err:
                fail(f"setup statement {number}: {err}\n--- statement ---\n{statement}")
        results = []
        for number, query in enumerate(request["queries"], start=1):
            try:
                results.append(sess.query(query, "JSONCompact").data())
            except Exception as err:
                fail(f"query {number}: {err}\n--- query ---\n{query}")
        json.dump({"results": results}, sys.stdout)
    finally:
        try:
            sess.query(f"DROP DATABASE IF EXISTS {database}")
        finally:
            sess.close()


if __name__ == "__main__":
    main()
