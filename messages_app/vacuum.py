"""PostgreSQL: the server vacuums the message table itself, often.

Every ack deletes a row, and a deleted row stays in the table and its indexes
until VACUUM removes it. Claims read the head of the queue, so they step over
every dead row there. Autovacuum's defaults visit a table once a fifth of it is
dead, and at most once a minute per database: for a queue, with few live rows
and thousands of deletes a second, tens of thousands of dead rows pile up at
the head and every claim slows down (and this machine's PostgreSQL runs with
autovacuum off). So after ``MQ_VACUUM_EVERY`` deletes in this process a
background thread runs ``VACUUM`` on the message table, one at a time. VACUUM
takes no lock that stops reads or writes; 0 turns this off.
"""

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection

from .models import Message

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_deleted = 0
_running = False


def deleted(count: int) -> None:
    """Count messages deleted; start a vacuum when ``MQ_VACUUM_EVERY`` have been."""
    global _deleted, _running
    if not settings.MQ_VACUUM_EVERY or connection.vendor != "postgresql":
        return
    with _lock:
        _deleted += count
        if _running or _deleted < settings.MQ_VACUUM_EVERY:
            return
        _deleted, _running = 0, True
    threading.Thread(target=_vacuum, name="mq-vacuum", daemon=True).start()


def _vacuum() -> None:
    global _running
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {Message._meta.db_table}")
    except DatabaseError as exc:
        logger.warning("could not vacuum the message table: %s", exc)
    finally:
        connection.close()
        with _lock:
            _running = False
