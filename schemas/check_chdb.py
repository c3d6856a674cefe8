#!/usr/bin/env python3
"""Runs every ClickHouse migration on chDB, the current ClickHouse engine in-process.

The local stack runs Debian's ClickHouse 18.16 while production runs a current
release; the Rust migration tests apply the same files to the 18.16 server, and
this script proves they are valid on the modern engine too.

    python3 schemas/check_chdb.py [--statement SQL]... [--queries-json FILE]
    python3 schemas/check_chdb.py --cluster-json FILE

It creates a fresh database in a throw-away chDB session, executes each
statement of schemas/clickhouse/*.sql in file order (split exactly as the Rust
runner in crates/service-kit/src/migrate.rs splits them), runs any extra
`--statement` given (the runner's own bookkeeping DDL), then inserts one row into
`events` and reads it back (and its copy in `events_by_receipt`), and finally runs every query of `--queries-json`
(a JSON list of SQL strings; the services' query tests pass their SQL here). It exits non-zero naming the failing file and the
engine's error; a missing chdb module is an error too, never a skip.

With --cluster-json it checks the cluster form of the migrations instead
(crates/service-kit/src/migrate/cluster.rs): FILE holds {"database": NAME,
"cluster": NAME, "statements": [SQL, ...]}, the statements the Rust runner
would send to a cluster. chDB runs in-process, so it is given a cluster of
one server (itself), the `cluster`, `shard` and `replica` macros and an
in-memory Keeper; every statement is parsed as written (`EXPLAIN AST`, `ON
CLUSTER` included) and executed without its `ON CLUSTER` clause (chDB runs
no distributed DDL queue). Replicated tables stay read-only in chDB (no
replication runs in-process), so each replicated table is created as
written, then dropped and created again with the same engine unreplicated
(`ReplicatedReplacingMergeTree('/path', '{replica}', version)` becomes
`ReplacingMergeTree(version)`), and the statements after it (ALTERs,
views, backfills) run on that one.
"""

import argparse
import pathlib
import sys
import uuid

SCHEMAS = pathlib.Path(__file__).resolve().parent
CLICKHOUSE_DIR = SCHEMAS / "clickhouse"


def split_statements(sql):
    """Splits SQL text into statements, dropping comments.

    Statements end with `;` outside string literals, quoted identifiers and
    comments; `--` and `/* */` comments are removed; blank statements are skipped.
    Mirrors `split_statements` in crates/service-kit/src/migrate.rs.
    """
    statements = []
    current = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if c in ("'", '"', "`"):
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            current.append(sql[i : j + 1])
            i = j + 1
        elif c == "-" and nxt == "-":
            while i < n and sql[i] != "\n":
                i += 1
        elif c == "/" and nxt == "*":
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
        elif c == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    statement = "".join(current).strip()
    if statement:
        statements.append(statement)
    return statements


def fail(message):
    print(f"check_chdb: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--statement",
        action="append",
        default=[],
        help="extra SQL to run after the migrations (may repeat)",
    )
    parser.add_argument(
        "--queries-json",
        help="a JSON file holding a list of SQL queries to run after the round trip, each must succeed",
    )
    parser.add_argument(
        "--cluster-json",
        help="check the cluster form of the migrations instead (see the module documentation)",
    )
    args = parser.parse_args()
    if args.cluster_json:
        check_cluster_form(args.cluster_json)
        return

    try:
        from chdb import session as chdb_session
    except ImportError as err:
        fail(f"cannot import chdb ({err}); install it with: pip install chdb-core")

    files = sorted(CLICKHOUSE_DIR.glob("*.sql"))
    if not files:
        fail(f"no migrations found in {CLICKHOUSE_DIR}")

    database = f"chdb_check_{uuid.uuid4().hex}"
    sess = chdb_session.Session()
    try:
        sess.query(f"CREATE DATABASE {database}")
        sess.query(f"USE {database}")
        for path in files:
            rel = path.relative_to(SCHEMAS.parent)
            statements = split_statements(path.read_text(encoding="utf-8"))
            if not statements:
                fail(f"{rel}: contains no statement")
            for number, statement in enumerate(statements, start=1):
                try:
                    sess.query(statement)
                except Exception as err:  # chdb raises its own error types
                    fail(f"{rel}: statement {number} failed on chDB: {err}\n--- statement ---\n{statement}")
            print(f"ok  {rel} ({len(statements)} statement(s))")

        for number, statement in enumerate(args.statement, start=1):
            try:
                sess.query(statement)
            except Exception as err:
                fail(f"extra statement {number} failed on chDB: {err}\n--- statement ---\n{statement}")
            print(f"ok  extra statement {number}")

        event_id = str(uuid.uuid4())
        try:
            sess.query(
                "INSERT INTO events (event_id, event_type, user_id, session_id, video_id, timestamp,"
                " timestamp_ms, received_at_ms, position_seconds, duration_seconds, quality,"
                " bitrate_kbps, buffer_duration_ms, startup_time_ms, error_code, error_message, fatal,"
                " seek_from_seconds, seek_to_seconds, from_quality, to_quality, device_type, browser,"
                " os, country, player, cdn, properties, metadata) VALUES"
                f" ('{event_id}', 'video_progress', 'user-1', 'session-1', 'video-1',"
                " toDateTime('2024-05-01 12:00:00', 'UTC'), 1714564800000, 1714564800123, 42.5, 600,"
                " '720p', 2500, NULL, NULL, '', '', 0, NULL, NULL, '', '', 'desktop', 'Firefox',"
                " 'Linux', 'DE', 'hls.js 1.5', 'cdn-a', '{\"experiment\":\"b\"}', NULL)"
            )
            result = sess.query(
                "SELECT toString(event_id), event_type, user_id, video_id, position_seconds,"
                " bitrate_kbps, buffer_duration_ms, properties FROM events",
                "TabSeparated",
            )
        except Exception as err:
            fail(f"insert/select round trip on `events` failed on chDB: {err}")
        got = result.data().strip().split("\t")
        expected = [event_id, "video_progress", "user-1", "video-1", "42.5", "2500", "\\N", '{"experiment":"b"}']
        if got != expected:
            fail(f"round trip on `events` returned {got!r}, expected {expected!r}")
        print(f"ok  events round trip on chDB {chdb_version()}")

        # An aggregation run's rows, for the aggregates' lookup copies.
        try:
            sess.query(
                "INSERT INTO video_metrics (video_id, hour, date, views, viewers, version)"
                " VALUES ('video-1', toDateTime('2024-05-01 12:00:00', 'UTC'), '2024-05-01', 3, ['u:user-1'], 7)"
            )
            sess.query(
                "INSERT INTO user_engagement_daily (user_id, date, sessions, views, version)"
                " VALUES ('user-1', '2024-05-01', ['session-1'], 2, 7)"
            )
        except Exception as err:
            fail(f"inserting aggregated rows failed on chDB: {err}")

        # The materialized views copied the row into the receive-time table,
        # and its key into the freshness check's index with the insert time
        # the server filled in (a default column reaches the view).
        copies = [
            (
                "events_by_receipt",
                "SELECT toString(event_id), received_at_ms, bitrate_kbps FROM events_by_receipt",
                [event_id, "1714564800123", "2500"],
            ),
            (
                "keys_by_day_v2",
                "SELECT toString(date), video_id, session_id, length(groupUniqArrayArrayMerge(start_times)),"
                " maxMerge(inserted_max) > toDateTime('2020-01-01 00:00:00') FROM keys_by_day_v2"
                " GROUP BY date, video_id, session_id",
                ["2024-05-01", "video-1", "session-1", "0", "1"],
            ),
            (
                "events_by_time_v2",
                "SELECT toString(event_id), video_id, session_id, position_seconds, bitrate_kbps, browser,"
                " os, country, cdn FROM events_by_time_v2",
                [event_id, "video-1", "session-1", "42.5", "2500", "Firefox", "Linux", "DE", "cdn-a"],
            ),
            (
                "event_hour_inserts",
                "SELECT toUInt32(hour), last_inserted_at > toDateTime('2020-01-01 00:00:00') FROM event_hour_inserts",
                ["1714564800", "1"],
            ),
            (
                "keys_by_insert",
                "SELECT video_id, session_id, inserted_at > toDateTime('2020-01-01 00:00:00') FROM keys_by_insert",
                ["video-1", "session-1", "1"],
            ),
            (
                "video_metrics_lookup",
                "SELECT video_id, toString(date), views, viewers, version FROM video_metrics_lookup",
                ["video-1", "2024-05-01", "3", "['u:user-1']", "7"],
            ),
            (
                "user_engagement_lookup",
                "SELECT user_id, toString(date), sessions, views, version FROM user_engagement_lookup",
                ["user-1", "2024-05-01", "['session-1']", "2", "7"],
            ),
        ]
        for table, query, expected in copies:
            try:
                copied = sess.query(query, "TabSeparated")
            except Exception as err:
                fail(f"reading `{table}` failed on chDB: {err}")
            got = copied.data().strip().split("\t")
            if got != expected:
                fail(f"`{table}` holds {got!r} after the insert into `events`, expected {expected!r}")
            print(f"ok  {table} got the row through its materialized view")


        if args.queries_json:
            import json

            queries = json.loads(pathlib.Path(args.queries_json).read_text(encoding="utf-8"))
            for number, query in enumerate(queries, start=1):
                try:
                    sess.query(query, "TabSeparated")
                except Exception as err:
                    fail(f"query {number} of {args.queries_json} failed on chDB: {err}\n--- query ---\n{query}")
            print(f"ok  {len(queries)} queries from {args.queries_json}")
    finally:
        try:
            sess.query(f"DROP DATABASE IF EXISTS {database}")
        finally:
            sess.close()


CLUSTER_CONFIG = """<clickhouse>
    <tcp_port>{port}</tcp_port>
    <zookeeper><implementation>testkeeper</implementation></zookeeper>
    <macros><cluster>{cluster}</cluster><shard>1</shard><replica>chdb</replica></macros>
    <remote_servers>
        <{cluster}>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>{port}</port></replica>
            </shard>
        </{cluster}>
    </remote_servers>
</clickhouse>
"""


def check_cluster_form(path):
    import json
    import os
    import re
    import tempfile

    spec = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    cluster, database, statements = spec["cluster"], spec["database"], spec["statements"]
    try:
        import chdb
    except ImportError as err:
        fail(f"cannot import chdb ({err}); install it with: pip install chdb-core")
    config_dir = tempfile.mkdtemp(prefix="chdb-cluster-")
    config = pathlib.Path(config_dir) / "config.xml"
    # The server's own native port: the one shard is this process, read without a connection.
    config.write_text(CLUSTER_CONFIG.format(port=39000, cluster=cluster), encoding="utf-8")
    conn = chdb.connect(f"file::memory:?config-file={config}")
    cur = conn.cursor()

    def run(sql):
        cur.execute(sql)
        return cur.fetchall()

    on_cluster = re.compile(r"\s+ON CLUSTER\s+" + re.escape(cluster) + r"\b")
    replicated = re.compile(r"ENGINE = Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?")
    created = re.compile(r"CREATE TABLE IF NOT EXISTS (\S+)")
    replicas = 0
    try:
        run(f"CREATE DATABASE {database}")
        run(f"USE {database}")
        for number, statement in enumerate(statements, start=1):
            try:
                run(f"EXPLAIN AST {statement}")
            except Exception as err:
                fail(f"cluster statement {number} does not parse on chDB: {err}\n--- statement ---\n{statement}")
            local = on_cluster.sub("", statement)
            steps = [local]
            if replicated.search(local):
                # As written, then unreplicated for what follows (see the module documentation).
                table = created.match(local).group(1)
                steps += [f"DROP TABLE {table}", replicated.sub(r"ENGINE = \1(", local)]
                replicas += 1
            for step in steps:
                try:
                    run(step)
                except Exception as err:
                    fail(f"cluster statement {number} failed on chDB: {err}\n--- statement ---\n{step}")
        print(
            f"ok  {len(statements)} cluster statements on chDB {chdb_version()} "
            f"({replicas} replicated tables created as written, then unreplicated)"
        )
        sys.stdout.flush()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # chDB's in-memory Keeper keeps threads that stop the interpreter from exiting.
        os._exit(0 if sys.exc_info()[0] is None else 1)


def chdb_version():
    try:
        import chdb

        return chdb.__version__
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
