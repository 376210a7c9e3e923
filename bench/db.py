"""The databases under test: a fresh one per database kind and run, emptied
between workloads, and a backlog loaded straight into the table.

SQLite: a file in the run's temp dir. PostgreSQL: the database ``mq_bench``
(name configurable), dropped and created again each time.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import make_payload

TABLE = "messages_app_message"
QUEUE_TABLE = "messages_app_queue"
# Its JSON columns (the SQS endpoint's) have no database default: given here.
QUEUE_COLUMNS = "name, created_at, sqs_attributes, tags"
QUEUE_JSON = "'{}', '{}'"
QUEUE = "default"


def create(kind: str, workdir: Path, pg_url: str) -> str:
    """A new, empty database of ``kind``; returns its DATABASE_URL."""
    if kind == "sqlite":
        path = workdir / "mq_bench.sqlite3"
        for leftover in workdir.glob("mq_bench.sqlite3*"):
            leftover.unlink()
        return f"sqlite:///{path}"
    if kind == "postgres":
        import psycopg

        name = urlsplit(pg_url).path.lstrip("/")
        with psycopg.connect(_pg_admin_url(pg_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return pg_url
    raise ValueError(f"unknown database {kind!r}")


def drop(url: str) -> None:
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite:///"))
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_pg_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_admin_url(url: str) -> str:
    """The same server, database ``postgres`` (to create and drop the bench's)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


def connect(url: str):
    """A plain DB-API connection in autocommit mode."""
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        return conn
    import psycopg

    return psycopg.connect(url, autocommit=True)


def version(url: str) -> str:
    conn = connect(url)
    try:
        if url.startswith("sqlite:"):
            return "SQLite " + conn.execute("SELECT sqlite_version()").fetchone()[0]
        return conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    finally:
        conn.close()


def reset(url: str) -> None:
    """No messages, and the queue ``default`` exists (the schema must be migrated)."""
    conn = connect(url)
    try:
        if url.startswith("sqlite:"):
            conn.execute(f"DELETE FROM {TABLE}")
            conn.execute(
                f"INSERT OR IGNORE INTO {QUEUE_TABLE} ({QUEUE_COLUMNS})"
                f" VALUES (?, ?, {QUEUE_JSON})",
                (QUEUE, _sqlite_time(datetime.now(UTC))),
            )
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.execute(f"TRUNCATE {TABLE}")
            conn.execute(
                f"INSERT INTO {QUEUE_TABLE} ({QUEUE_COLUMNS}) VALUES (%s, now(), {QUEUE_JSON})"
                " ON CONFLICT DO NOTHING",
                (QUEUE,),
            )
    finally:
        conn.close()


def load_backlog(url: str, count: int) -> None:
    """Store ``count`` ready messages in the queue ``default`` with bulk SQL.

    Payload indices are 0..count-1, like messages sent by the load generator.
    PostgreSQL gets a VACUUM ANALYZE afterwards, as autovacuum would give a
    table that grew to this size over time.
    """
    sent = datetime.now(UTC) - timedelta(seconds=1)
    stamp = sent.timestamp()
    conn = connect(url)
    try:
        if url.startswith("sqlite:"):
            when = _sqlite_time(sent)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {TABLE} (queue_id, payload, created_at, visible_at, attempts, dead)"
                " VALUES (?, ?, ?, ?, 0, 0)",
                ((QUEUE, make_payload(i, stamp), when, when) for i in range(count)),
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            when = sent.isoformat(" ")
            columns = "queue_id, payload, created_at, visible_at, attempts, dead"
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy,
            ):
                # Our payloads hold no tab, newline or backslash: COPY's text format as is.
                for start in range(0, count, 10_000):
                    copy.write(
                        "".join(
                            f"{QUEUE}\t{make_payload(i, stamp)}\t{when}\t{when}\t0\tf\n"
                            for i in range(start, min(start + 10_000, count))
                        )
                    )
            conn.execute(f"VACUUM ANALYZE {TABLE}")
    finally:
        conn.close()


def _sqlite_time(moment: datetime) -> str:
    """A datetime as Django stores it in SQLite (naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
