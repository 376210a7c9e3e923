"""A message's state, defined once.

A message's state follows from its columns, its queue's ``max_attempts`` and
the clock, so no timer or cron job is needed for a lease to end:

- ready:   not dead, ``visible_at <= now``, deliveries left (a lease that ran
           out counts too: ``lease`` is still set, but the message can be
           delivered again)
- delayed: not dead, no lease, ``visible_at > now``
- leased:  not dead, a lease, ``visible_at > now`` (``visible_at`` is the lease's end)
- dead:    ``dead``, or its last allowed delivery's lease ran out (spent);
           never delivered again

Each rule below is a ``Q`` object, and everything else is derived from it:
the QuerySet methods filter with it (``models.MessageQuerySet``), the stores
compile it into their raw statements (``compile_where``, with ``Param``
placeholders), and ``Message.state()`` evaluates it on a row in Python
(``holds``). ``now`` and ``limit`` are values, or expressions over columns
(``max_attempts_expression``) when one query spans several queues.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, OuterRef, Q, Value
from django.db.models.functions import Coalesce

# No limit on deliveries: larger than any attempts counter will ever get.
UNLIMITED_ATTEMPTS = 2**31 - 1
STATES = ("ready", "leased", "delayed", "dead")


def effective_max_attempts(queue_max_attempts: int | None) -> int:
    """Deliveries allowed: the queue's ``max_attempts``, else ``MQ_MAX_ATTEMPTS``, else no limit."""
    return queue_max_attempts or settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS


def effective_timeout(queue_timeout: float | None) -> float:
    """Lease seconds: the queue's ``timeout``, else ``PENDING_TIMEOUT`` (milliseconds)."""
    return queue_timeout if queue_timeout is not None else settings.PENDING_TIMEOUT / 1000


def max_attempts_expression(field: str | OuterRef = "queue__max_attempts") -> Coalesce:
    """``effective_max_attempts`` as an expression over each row's queue (the
    queue's ``max_attempts`` named by ``field``: a path, or an OuterRef)."""
    return Coalesce(
        F(field) if isinstance(field, str) else field, Value(effective_max_attempts(None))
    )


# ``dead IN (false)``, not ``dead=False``: on SQLite the ORM writes the latter
# as ``NOT dead``, which cannot seek in the indexes on (queue, dead, ...).
ALIVE = Q(dead__in=[False])


def ready(now, limit) -> Q:
    """Deliverable now: what the claim takes, oldest first."""
    return ALIVE & Q(visible_at__lte=now, attempts__lt=limit)


def delayed(now) -> Q:
    return ALIVE & Q(lease__isnull=True, visible_at__gt=now)


def leased(now) -> Q:
    return ALIVE & Q(lease__isnull=False, visible_at__gt=now)


def spent(now, limit) -> Q:
    """Stored alive, but its last allowed delivery is over: dead."""
    return ALIVE & Q(visible_at__lte=now, attempts__gte=limit)


def dead(now, limit) -> Q:
    return Q(dead=True) | spent(now, limit)


def expired(now) -> Q:
    """Leased once, the lease has run out, and nobody has claimed it since."""
    return ALIVE & Q(lease__isnull=False, visible_at__lte=now)


def held(now, lease) -> Q:
    """The caller holds the message's delivery: with ``lease``, that delivery is
    the current one (even run out, as long as nobody claimed the message since);
    without (None, the seed's clients), the current lease has not run out."""
    current = ALIVE & Q(lease__isnull=False)
    return current & (Q(visible_at__gt=now) if lease is None else Q(lease=lease))


def state_rules(now, limit) -> dict[str, Q]:
    """The four states, a partition of all messages."""
    return {
        "ready": ready(now, limit),
        "leased": leased(now),
        "delayed": delayed(now),
        "dead": dead(now, limit),
    }


_COMPARISONS = {
    "exact": lambda a, b: a == b,
    "in": lambda a, b: a in b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "isnull": lambda a, b: (a is None) == b,
}


def holds(rule: Q, row) -> bool:
    """Whether ``rule`` (with plain values, not expressions) is true of ``row``,
    an object with the columns as attributes."""
    results = (
        holds(child, row)
        if isinstance(child, Q)
        else _compare(getattr(row, child[0].split("__")[0]), child[0], child[1])
        for child in rule.children
    )
    result = all(results) if rule.connector == Q.AND else any(results)
    return not result if rule.negated else result


def _compare(value, lookup: str, operand) -> bool:
    _, _, comparison = lookup.partition("__")
    return _COMPARISONS[comparison or "exact"](value, operand)


class Param(models.Expression):
    """A named placeholder in a statement compiled once (``compile_where``): it
    compiles to ``%s`` and stands for itself in the parameters, to be replaced
    by the value of that name at each execution (``bind``)."""

    def __init__(self, name: str, output_field: models.Field):
        super().__init__(output_field=output_field)
        self.name = name

    def as_sql(self, compiler, connection):
        return "%s", [self]


def compile_where(model: type[models.Model], rule: Q, connection) -> tuple[str, list]:
    """``rule`` as the SQL text of a WHERE clause on ``model``'s table, and its parameters."""
    query = model.objects.filter(rule).query
    compiler = query.get_compiler(connection=connection)
    return compiler.compile(query.where)


def bind(params: list, values: dict) -> list:
    """The parameters of a compiled clause, each ``Param`` replaced by its value."""
    return [values[p.name] if isinstance(p, Param) else p for p in params]
