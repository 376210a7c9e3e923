"""Django's SQLite backend, with writers taking turns instead of retrying.

SQLite allows one writer at a time. Left to itself, a second writer polls the
lock in its busy handler, sleeping up to tens of milliseconds between tries, so
under load most of the time goes to sleeping. Here every write transaction
(``BEGIN IMMEDIATE``, see settings) first takes a lock that blocks until the
current writer is done and then wakes the next one at once: a thread lock
within a process, and ``flock`` on a file beside the database across the
server's processes. Readers are not affected (WAL).
"""

import fcntl
import os
import threading

from django.db.backends.sqlite3 import base


class WriteLock:
    def __init__(self, path: str):
        self.path = path
        self.threads = threading.Lock()
        self.fd: int | None = None
        self.pid: int | None = None

    def acquire(self) -> None:
        self.threads.acquire()
        try:
            # A forked process must open its own file: flock belongs to the open
            # file, and a shared one would let both processes write at once.
            if self.pid != os.getpid():
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self.pid = os.getpid()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.threads.release()


_locks: dict[str, WriteLock] = {}
_locks_guard = threading.Lock()


def write_lock(database: str) -> WriteLock:
    with _locks_guard:
        return _locks.setdefault(database, WriteLock(f"{database}-writer.lock"))


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def _start_transaction_under_autocommit(self):
        if not self.is_in_memory_db():
            write_lock(self.settings_dict["NAME"]).acquire()
            self._holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            write_lock(self.settings_dict["NAME"]).release()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_write_lock()
