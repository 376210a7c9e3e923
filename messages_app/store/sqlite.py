"""SQLite: one writer at a time, so the claim is one ``UPDATE ... RETURNING``
inside an IMMEDIATE transaction; nothing can claim the same row in between.

Every write, single statements included, runs in a transaction so that it
takes its turn on the writer lock (mq_project/sqlite_backend). Other
processes' commits show in ``PRAGMA data_version``, nearly free to read.
"""

import time

from django.db import connection

from .base import CLAIM_INDEX, SET_LEASE, TABLE, ChangeFeed, Store

# How often the watcher reads data_version: waking 50 times a second in each
# process is not free (200 idle long-polls: 5.4 % of a core at 20 ms, 4.2 % at 50 ms).
TICK_SECONDS = 0.05


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
    """``PRAGMA data_version`` changes when another connection commits."""

    def __init__(self):
        self.version = self._read()

    def _read(self) -> int:
        # On the driver's connection, not through Django's cursor, which costs
        # more than the read itself 20 times a second in every process.
        connection.ensure_connection()
        return connection.connection.execute("PRAGMA data_version").fetchone()[0]

    def changes(self) -> set[str]:
        time.sleep(TICK_SECONDS)
        version = self._read()
        self.everything_changed = version != self.version
        self.version = version
        return set()
