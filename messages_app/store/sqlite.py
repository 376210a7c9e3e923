"""SQLite: one writer at a time, so the claim is one ``UPDATE ... RETURNING``
inside an IMMEDIATE transaction; nothing can claim the same row in between.

Every write, single statements included, runs in a transaction so that it
takes its turn on the writer lock (mq_project/sqlite_backend). Other
processes' commits show in ``PRAGMA data_version``, nearly free to read.
"""

import logging
import time

from django.db import connection

from .base import CLAIM_INDEX, SET_LEASE, TABLE, ChangeFeed, Store

try:
    from inotify_simple import INotify, flags
except ImportError:  # not Linux
    INotify = None

logger = logging.getLogger(__name__)

# How often the watcher reads data_version, at most: waking 50 times a second
# in each process is not free (200 idle long-polls: 5.4 % of a core at 20 ms,
# 4.2 % at 50 ms). Where it cannot learn of writes (below), this often.
TICK_SECONDS = 0.05
# Where it can, it wakes on a write, and when none comes after this long (the
# longest a lease's end can go unseen, as on PostgreSQL).
IDLE_TICK_SECONDS = 0.25


class SQLiteStore(Store):
    def __init__(self):
        super().__init__()
        # The head of the queue is a range of the claim index read in id order.
        # With no statistics SQLite would rather range over message_visible_idx
        # and sort every deliverable row (a million, with a backlog).
        self.claim_statement = f"""
            UPDATE {TABLE} SET {SET_LEASE}, visible_at = %s, attempts = attempts + 1
            WHERE id IN (
                SELECT id FROM {TABLE} INDEXED BY {CLAIM_INDEX}
                WHERE {self.ready_where} ORDER BY id LIMIT %s
            )
            RETURNING id, payload, attempts, lease
        """

    def _claim(self, pick, leases, lease_end):
        return self.write(self.claim_statement, [*leases, lease_end, *pick])

    def write(self, statement, params):
        # In a transaction of its own, which takes its turn on the writer lock.
        return connection.write(statement, params)

    def change_feed(self) -> ChangeFeed:
        return DataVersionFeed()


class DataVersionFeed(ChangeFeed):
    """``PRAGMA data_version`` changes when another connection commits.

    On Linux a commit's write to the database's WAL file wakes the watcher at
    once (inotify), and an idle watcher wakes only every IDLE_TICK_SECONDS;
    elsewhere it reads every TICK_SECONDS."""

    def __init__(self):
        self.version = self._read()
        self.writes = watch_wal(connection.settings_dict["NAME"])
        self.woke = time.monotonic()

    def _read(self) -> int:
        # On the driver's connection, not through Django's cursor, which costs
        # more than the read itself 20 times a second in every process.
        connection.ensure_connection()
        return connection.connection.execute("PRAGMA data_version").fetchone()[0]

    def changes(self) -> set[str]:
        if self.writes is None:
            time.sleep(TICK_SECONDS)
        else:
            pause = self.woke + TICK_SECONDS - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self.writes.read(timeout=round(IDLE_TICK_SECONDS * 1000))
            self.woke = time.monotonic()
        version = self._read()
        self.everything_changed = version != self.version
        self.version = version
        return set()

    def close(self) -> None:
        if self.writes is not None:
            self.writes.close()


def watch_wal(database: str):
    """An inotify watch on ``database``'s WAL file, which every commit writes
    to, or None where there is none to be had. The file is there as long as a
    connection is open (the feed's is); not its directory, where other files
    (a log) may be written all the time."""
    if INotify is None:
        return None
    writes = None
    try:
        writes = INotify()
        writes.add_watch(f"{database}-wal", flags.MODIFY)
    except OSError as error:  # e.g. the user's inotify instances used up, no WAL
        if writes is not None:
            writes.close()
        logger.warning(
            "long-poll watcher: no inotify (%s); reading every %s s", error, TICK_SECONDS
        )
        return None
    return writes
