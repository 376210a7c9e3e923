"""Django's MySQL backend (MariaDB), with at most ``MQ_DB_CONNECTIONS``
connections open at once per server process.

A request opens its own connection and closes it at its end (``CONN_MAX_AGE``
0, see settings): a thread that keeps one would hold it while idle or parked
in a long-poll. Unbounded, a burst of requests (a thousand long-polls ending
together and polling again) opened as many connections at once, and those
past the database's ``max_connections`` were refused (``503``). Here a
connection takes one of the process's slots first: past them, a request
waits for a connection to close, up to ``MQ_DB_TIMEOUT`` seconds, then
answers ``503 database_unavailable``. PostgreSQL gets the same bound from its
pool's ``max_size``.
"""

import os
import threading

from django.conf import settings
from django.db.backends.mysql import base
from django.db.utils import OperationalError

_slots: dict[int, threading.BoundedSemaphore] = {}
_creating = threading.Lock()


def slots() -> threading.BoundedSemaphore:
    """This process's slots (a forked process makes its own)."""
    pid = os.getpid()
    if pid not in _slots:
        with _creating:
            _slots.setdefault(pid, threading.BoundedSemaphore(settings.MQ_DB_CONNECTIONS))
    return _slots[pid]


class DatabaseWrapper(base.DatabaseWrapper):
    holds_slot = False

    def get_new_connection(self, conn_params):
        if self.settings_dict["CONN_MAX_AGE"] != 0:
            # Threads keep their connections: a slot each would be held forever.
            return super().get_new_connection(conn_params)
        if not slots().acquire(timeout=settings.MQ_DB_TIMEOUT):
            raise OperationalError(
                f"all {settings.MQ_DB_CONNECTIONS} database connections of this process"
                f" (MQ_DB_CONNECTIONS) stayed in use for {settings.MQ_DB_TIMEOUT} s"
            )
        try:
            connection = super().get_new_connection(conn_params)
        except BaseException:
            slots().release()
            raise
        self.holds_slot = True
        return connection

    def _close(self):
        try:
            super()._close()
        finally:
            if self.holds_slot:
                self.holds_slot = False
                slots().release()
