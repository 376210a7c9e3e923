"""One definition of a message's state (messages_app/states.py), and every
place that classifies messages agreeing with it and with the contract, row by
row: ``Message.state()``, the QuerySet methods, the claim's SQL, the counts of
/queues and /metrics, and the admin's state filter.

The grid: every combination of the dead flag, a lease or none, ``visible_at``
before or after now, attempts below, at and above the limit, the queue's
limit set or unset, and ``MQ_MAX_ATTEMPTS`` set or unset.
"""

import itertools
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from messages_app import runtime, states
from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db

QUEUE_LIMIT = 3  # the queue "limited"; the queue "default_limit" has none
MQ_MAX_ATTEMPTS = 5
ATTEMPTS = [0, 2, 3, 4, 5, 6]  # below, at and above both limits


def expected_state(dead: bool, lease, visible_now: bool, attempts: int, limit: int) -> str:
    """The contract's words (DESIGN.md, README), written out independently of states.py."""
    if dead:
        return "dead"
    if not visible_now:  # the lease or the delay has not ended
        return "leased" if lease else "delayed"
    return "ready" if attempts < limit else "dead"  # its last allowed delivery is over


@pytest.fixture(params=[None, MQ_MAX_ATTEMPTS], ids=["MQ_MAX_ATTEMPTS unset", "set"])
def grid(request, clock, settings):
    """Every combination stored; each row's id with the state the contract gives it."""
    settings.MQ_MAX_ATTEMPTS = request.param
    now = timezone.now()
    limits = {
        "limited": QUEUE_LIMIT,
        "default_limit": request.param or states.UNLIMITED_ATTEMPTS,
    }
    Queue.objects.create(name="limited", max_attempts=QUEUE_LIMIT)
    Queue.objects.create(name="default_limit")
    expected = {}
    combinations = itertools.product(limits, [False, True], [None, "t" * 32], [-1, 1], ATTEMPTS)
    for queue, dead, lease, later, attempts in combinations:
        message = Message.objects.create(
            queue_id=queue,
            payload="1",
            dead=dead,
            lease=lease,
            visible_at=now + timedelta(seconds=later),
            attempts=attempts,
        )
        expected[message.id] = (
            queue,
            expected_state(dead, lease, later < 0, attempts, limits[queue]),
        )
    return expected, limits


def ids_in(expected: dict, queue: str, state: str) -> set[int]:
    return {i for i, (q, s) in expected.items() if q == queue and s == state}


def test_the_grid_has_every_state_in_both_queues(grid):
    expected, _ = grid

    assert {(q, s) for q, s in expected.values()} == {
        (queue, state) for queue in ("limited", "default_limit") for state in states.STATES
    }


def test_message_state_classifies_every_row_as_the_contract_does(grid):
    expected, _ = grid

    for message in Message.objects.select_related("queue"):
        assert (message.id, message.state()) == (message.id, expected[message.id][1])


@pytest.mark.parametrize("state", states.STATES)
def test_each_queryset_method_selects_exactly_the_rows_in_its_state(grid, state):
    expected, _ = grid

    selected = set(Message.objects.in_state(state).values_list("id", flat=True))

    assert selected == {i for i, (_, s) in expected.items() if s == state}


@pytest.mark.parametrize("queue", ["limited", "default_limit"])
def test_the_claim_takes_exactly_the_ready_rows_oldest_first(grid, queue):
    expected, limits = grid
    store = runtime.current().store
    now = timezone.now()

    assert store.deliverable(queue, now, limits[queue])
    claimed = store.claim(queue, 1000, "c" * 32, now, now + timedelta(hours=1), limits[queue])

    assert [row.id for row in claimed] == sorted(ids_in(expected, queue, "ready"))
    assert not store.deliverable(queue, now, limits[queue])


def test_the_counts_of_queues_are_the_rows_in_each_state(grid, api):
    expected, _ = grid

    queues = {q["name"]: q for q in api.get("/queues").json()["queues"]}

    for (queue, state), count in Counter(expected.values()).items():
        assert (queue, state, queues[queue][state]) == (queue, state, count)


def test_the_gauges_of_metrics_are_the_rows_in_each_state(grid, client):
    expected, _ = grid

    text = client.get("/metrics").content.decode()

    gauges = {
        (queue, state): float(value)
        for queue, state, value in re.findall(
            r'^mq_messages\{queue="([^"]+)",state="([^"]+)"\} (\S+)$', text, re.MULTILINE
        )
    }
    assert gauges == {key: float(n) for key, n in Counter(expected.values()).items()}


@pytest.mark.parametrize("state", states.STATES)
def test_the_admins_state_filter_lists_exactly_the_rows_in_that_state(grid, admin, state):
    expected, _ = grid

    response = admin.get("/admin/messages_app/message/", {"state": state, "all": ""})

    listed = {m.id for m in response.context["cl"].result_list}
    assert listed == {i for i, (_, s) in expected.items() if s == state}
