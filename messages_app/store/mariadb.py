"""MariaDB: no ``UPDATE ... RETURNING``, so the claim is a ``SELECT ... FOR
UPDATE SKIP LOCKED`` and an ``UPDATE`` of the picked ids in one short
transaction. InnoDB may pick such a transaction as a deadlock victim; it is
rolled back whole and run again. No change signal for long polls: every tick
counts as a change (the watcher's probe is an indexed query)."""

import time

from django.db import OperationalError, connection, transaction

from .base import CLAIM_INDEX, SET_LEASE, TABLE, ChangeFeed, Store

# InnoDB's "Deadlock found when trying to get lock".
DEADLOCK = 1213
DEADLOCK_TRIES = 5
TICK_SECONDS = 0.1


class MariaDBStore(Store):
    def __init__(self):
        super().__init__()
        # Without statistics MariaDB would rather range over message_visible_idx and sort.
        self.pick_statement = f"""
            SELECT id, payload, attempts, lease FROM {TABLE} FORCE INDEX ({CLAIM_INDEX})
            WHERE {self.ready_where} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
        """
        self._lease = (
            f"UPDATE {TABLE} SET {SET_LEASE}, visible_at = %s, attempts = attempts + 1 "
            "WHERE id IN ({ids})"
        )

    def _claim(self, pick, leases, lease_end):
        def claim() -> list[tuple]:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(self.pick_statement, pick)
                rows = cursor.fetchall()
                if rows:
                    ids = [row[0] for row in rows]
                    marks = ", ".join(["%s"] * len(ids))
                    cursor.execute(self._lease.format(ids=marks), [*leases, lease_end, *ids])
            return [
                (id_, payload, attempts + 1, leases[old is not None])
                for id_, payload, attempts, old in rows
            ]

        return self.retrying(claim)

    def retrying(self, transaction_function):
        """Row locks taken through secondary indexes (claims and deletes on one
        queue) can deadlock in InnoDB; the victim's transaction is rolled back
        whole, so running it again is safe (not inside an outer transaction)."""
        for attempt in range(1, DEADLOCK_TRIES + 1):
            try:
                return transaction_function()
            except OperationalError as exc:
                retry = not connection.in_atomic_block and exc.args[0] == DEADLOCK
                if not retry or attempt == DEADLOCK_TRIES:
                    raise

    def change_feed(self) -> ChangeFeed:
        return PollFeed()

    def upsert_tail(self, added, replaced):
        quote = connection.ops.quote_name
        sets = [f"{quote(c)} = {quote(c)} + VALUES({quote(c)})" for c in added]
        sets += [f"{quote(c)} = VALUES({quote(c)})" for c in replaced]
        return f"ON DUPLICATE KEY UPDATE {', '.join(sets)}"


class PollFeed(ChangeFeed):
    everything_changed = True

    def changes(self) -> set[str]:
        time.sleep(TICK_SECONDS)
        return set()
