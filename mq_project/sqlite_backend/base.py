"""Django's SQLite backend, with writers taking turns instead of retrying.

SQLite allows one writer at a time. Left to itself, a second writer polls the
lock in its busy handler, sleeping up to tens of milliseconds between tries, so
under load most of the time goes to sleeping. Here every write transaction
(``BEGIN IMMEDIATE``, see settings) first takes a lock that blocks until the
current writer is done and then wakes the next one at once: a thread lock
within a process, and ``flock`` on a file beside the database across the
server's processes. Readers are not affected (WAL).

A write of one statement outside any transaction (the hot path's send, claim
and done) goes straight to the sqlite3 connection (``write``): the same lock,
``BEGIN IMMEDIATE``, the statement, ``COMMIT``, errors raised as Django's,
without the work of an atomic block and a Django cursor around it.
"""

import fcntl
import os
import threading
from functools import lru_cache

from django.db import transaction
from django.db.backends.sqlite3 import base
from django.utils.functional import cached_property


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
    lock = _locks.get(database)
    if lock is None:
        with _locks_guard:
            lock = _locks.setdefault(database, WriteLock(f"{database}-writer.lock"))
    return lock


@lru_cache(maxsize=256)
def _qmark(statement: str) -> str:
    """``statement`` with sqlite3's placeholders, as Django's cursor converts it."""
    return base.FORMAT_QMARK_REGEX.sub("?", statement).replace("%%", "%")


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

    def write(self, statement: str, params: list) -> list[tuple]:
        """Run one write ``statement`` (``%s`` placeholders) in a transaction of
        its own, or as part of the atomic block around it; the rows it returns.

        Outside an atomic block, and when no query is logged or wrapped, it
        goes straight to the sqlite3 connection, as ``transaction.atomic`` and a
        cursor would run it: the write lock, ``BEGIN IMMEDIATE``, the
        statement, ``COMMIT`` (``ROLLBACK`` if anything failed), errors raised
        as Django's.
        """
        if self.in_atomic_block or self.queries_logged or self.execute_wrappers:
            with transaction.atomic(using=self.alias), self.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall()
        self.close_if_health_check_failed()
        if self.connection is None:
            self.ensure_connection()
        lock = None if self.is_in_memory_db() else write_lock(self.settings_dict["NAME"])
        if lock is not None:
            lock.acquire()
        try:
            with self.wrap_database_errors:
                self.connection.execute(self._begin)
                try:
                    rows = self.connection.execute(_qmark(statement), params).fetchall()
                    self.connection.execute("COMMIT")
                except BaseException:
                    self._rollback_write()
                    raise
            return rows
        finally:
            if lock is not None:
                lock.release()

    def _rollback_write(self) -> None:
        """Roll back a failed ``write``; close the connection if even that fails."""
        try:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
        except self.Database.Error:
            self.close()

    @cached_property
    def _begin(self) -> str:
        return f"BEGIN {self.transaction_mode or ''}"

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
