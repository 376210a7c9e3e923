"""A model-based test: hypothesis generates sequences of operations (send, with
and without delay, one or a batch; next, one or a batch, with a lease timeout;
done, one or a batch, with the current, an earlier, another or no lease; give
back, with a delay; extend the lease; move the clock; set a queue's timeout and
max_attempts; redrive; the requeue_expired housekeeping) on two queues, runs
each against the real app through its HTTP API and against ``Model``, a few
lines of Python per operation, and checks after every step that both gave the
same answers (deliveries with their ids, payloads, attempts and lease ends, in
FIFO order; statuses and error codes), and after every tenth step and the last
the same counts by state (``GET /queues``). A failing sequence is shrunk and
printed as the steps that reproduce it.
"""

import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from contract import assert_error
from django.core.management import call_command
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from messages_app import runtime
from messages_app.counters import LEASE_TOKEN
from messages_app.errors import STATUS
from messages_app.models import IdempotencyKey, Message, Queue

# Every example starts at this moment, with the clock stopped; only ``tick`` moves it.
START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
# The seed routes are the queue ``default``; the other queue is reached under /queues/.
QUEUES = ("default", "jobs")
# A well-formed lease token the server never hands out.
UNKNOWN_LEASE = "0" * 32
STATES = ("ready", "delayed", "leased", "dead")


def at(seconds: float) -> str:
    """The API's spelling of the moment ``seconds`` after ``START``."""
    moment = START + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def route(queue: str, tail: str) -> str:
    return f"/{tail}" if queue == "default" else f"/queues/{queue}/{tail}"


def canonical(payload) -> str:
    """A payload as JSON text, so that ``1``, ``1.0`` and ``true`` differ."""
    return json.dumps(payload)


# The model


@dataclass
class Stored:
    """A message as the model keeps it; times are seconds after ``START``."""

    id: int
    queue: str
    payload: str  # canonical JSON text
    sent_at: float
    visible_at: float  # the end of its delay or of its current lease
    lease: str | None = None  # the token of its latest delivery, until cleared
    attempts: int = 0
    dead: bool = False  # stored dead (given back on its last delivery, or housekept)


class Model:
    """The queue as the contract describes it, in memory.

    A message is ready once ``visible_at`` has come and it has deliveries left;
    delayed or leased before that (leased when a delivery holds it); dead when
    stored dead or when its last allowed delivery is over. ``next`` leases the
    ready messages with the smallest ids, so a message whose lease ran out is
    back at the front. A delivery is held by its lease token (also once the
    lease ran out, until someone else is given the message or housekeeping
    clears it) or, without a token, while the lease runs.
    """

    def __init__(self, pending_timeout: float, max_attempts: int | None):
        self.now = 0.0
        self.pending_timeout = pending_timeout
        self.max_attempts = max_attempts
        self.queues: dict[
            str, dict
        ] = {}  # name -> {"timeout", "max_attempts", "dead_letter_queue"}
        self.messages: dict[int, Stored] = {}
        self.leases: dict[int, list[str]] = {}  # every token handed out, per message id
        self.last_id = 0

    # Settings and states

    def limit(self, queue: str) -> float:
        own = self.queues.get(queue, {}).get("max_attempts")
        return own or self.max_attempts or math.inf

    def lease_seconds(self, queue: str) -> float:
        own = self.queues.get(queue, {}).get("timeout")
        return own if own is not None else self.pending_timeout

    def state(self, m: Stored) -> str:
        if m.dead or (m.visible_at <= self.now and m.attempts >= self.limit(m.queue)):
            return "dead"
        if m.visible_at <= self.now:
            return "ready"
        return "delayed" if m.lease is None else "leased"

    def in_queue(self, queue: str) -> list[Stored]:
        return sorted((m for m in self.messages.values() if m.queue == queue), key=lambda m: m.id)

    def held(self, m: Stored, lease: str | None) -> bool:
        if m.dead or m.lease is None:
            return False
        return m.visible_at > self.now if lease is None else m.lease == lease

    def why_not_held(self, queue: str, message_id: int, lease: str | None) -> str:
        m = self.messages.get(message_id)
        if m is None or m.queue != queue:
            return "not_found"
        if m.dead:
            return "message_dead"
        if m.lease is None:
            return "not_leased"
        return "lease_expired" if lease is None else "stale_lease"

    def holder(self, queue: str, message_id: int, lease: str | None) -> Stored | None:
        m = self.messages.get(message_id)
        return m if m is not None and m.queue == queue and self.held(m, lease) else None

    # Operations

    def ensure(self, queue: str) -> None:
        # No dead-letter queue: dead messages stay in place, as the model keeps them.
        self.queues.setdefault(
            queue, {"timeout": None, "max_attempts": None, "dead_letter_queue": None}
        )

    def send(self, queue: str, payloads: list, delay: float, ids: list[int]) -> None:
        assert len(ids) == len(payloads)
        self.ensure(queue)
        for message_id, payload in zip(ids, payloads, strict=True):
            assert message_id > self.last_id, f"id {message_id} after {self.last_id}"
            self.last_id = message_id
            self.messages[message_id] = Stored(
                message_id, queue, canonical(payload), self.now, self.now + delay
            )

    def claim(self, queue: str, count: int, timeout: float | None) -> list[dict]:
        """Lease the oldest ``count`` ready messages; the deliveries but their tokens,
        which the app chooses (``hand_out``)."""
        ready = [m for m in self.in_queue(queue) if self.state(m) == "ready"][:count]
        end = self.now + (timeout if timeout is not None else self.lease_seconds(queue))
        for m in ready:
            m.visible_at = end
            m.attempts += 1
            m.lease = None
        return [
            {"id": m.id, "payload": m.payload, "attempts": m.attempts, "lease_expires_at": at(end)}
            for m in ready
        ]

    def hand_out(self, message_id: int, lease: str) -> None:
        self.messages[message_id].lease = lease
        self.leases.setdefault(message_id, []).append(lease)

    def done(self, queue: str, message_id: int, lease: str | None) -> str | None:
        """None when done, else the error code."""
        if self.holder(queue, message_id, lease) is None:
            return self.why_not_held(queue, message_id, lease)
        del self.messages[message_id]
        return None

    def done_many(self, queue: str, entries: list[tuple[int, str | None]]):
        held = [i for i, lease in entries if self.holder(queue, i, lease) is not None]
        for message_id in held:
            del self.messages[message_id]
        failed = [(i, self.why_not_held(queue, i, lease)) for i, lease in entries if i not in held]
        return held, failed

    def give_back(self, queue: str, message_id: int, lease: str | None, delay: float) -> str:
        """The new state ("ready", "delayed", "dead"), or the error code."""
        m = self.holder(queue, message_id, lease)
        if m is None:
            return self.why_not_held(queue, message_id, lease)
        m.lease = None
        if m.attempts >= self.limit(queue):
            m.dead = True
            return "dead"
        m.visible_at = self.now + delay
        return "delayed" if delay else "ready"

    def extend(self, queue: str, message_id: int, lease: str | None, timeout: float | None):
        """The new end of the lease, or the error code."""
        m = self.holder(queue, message_id, lease)
        if m is None:
            return self.why_not_held(queue, message_id, lease)
        m.visible_at = self.now + (timeout if timeout is not None else self.lease_seconds(queue))
        return at(m.visible_at)

    def store_deaths(self, messages: list[Stored]) -> int:
        """Store as dead those whose last allowed delivery is over (and alive until now)."""
        spent = [m for m in messages if not m.dead and self.state(m) == "dead"]
        for m in spent:
            m.dead, m.lease = True, None
        return len(spent)

    def configure(self, queue: str, changes: dict) -> dict:
        self.ensure(queue)
        self.store_deaths(self.in_queue(queue))  # deaths the old limit decided stay decided
        self.queues[queue].update(changes)
        return self.stats(queue)

    def redrive(self, queue: str) -> int:
        dead = [m for m in self.in_queue(queue) if self.state(m) == "dead"]
        for m in dead:
            m.dead, m.lease, m.attempts, m.visible_at = False, None, 0, self.now
        return len(dead)

    def requeue_expired(self) -> tuple[int, int]:
        """Housekeeping: (leases cleared, messages stored dead)."""
        dead = self.store_deaths(list(self.messages.values()))
        expired = [
            m
            for m in self.messages.values()
            if not m.dead and m.lease is not None and m.visible_at <= self.now
        ]
        for m in expired:
            m.lease = None
        return len(expired), dead

    def stats(self, queue: str) -> dict:
        messages = self.in_queue(queue)
        states = [self.state(m) for m in messages]
        live = [m for m, state in zip(messages, states, strict=True) if state != "dead"]
        return {
            "name": queue,
            **self.queues[queue],
            **{state: states.count(state) for state in STATES},
            "oldest_created_at": at(live[0].sent_at) if live else None,
        }


# The machine: each rule does one operation on the app and on the model.

queues = st.sampled_from(QUEUES)
payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=4,
)
# GET /queues (the counts by state, settings and oldest message) costs twice what an
# operation does: it is compared with the model after every CHECK_EVERY-th step and
# after the last; deliveries, statuses and error codes after every step.
CHECK_EVERY = 10
# Times in whole and half seconds, so that the clock lands exactly on ends of leases and delays.
delays = st.sampled_from([None, 0, 1, 2.5, 8])
lease_timeouts = st.sampled_from([None, 1, 2.5, 6])
ticks = st.sampled_from([0.5, 1, 2, 4, 10])
lease_choices = st.sampled_from(["current", "none", "earlier", "other", "unknown"])
# The operator's actions share one rule, as hypothesis picks among rules evenly: an
# operator acts less often than producers and consumers do, and each of their steps
# costs a fraction of an operator's (a PUT /queues answers the counts by state, the
# housekeeping visits every queue), so a sequence's time goes mostly to the
# interleavings of sends, claims, acks and the clock that find bugs.
operator_actions = st.one_of(
    st.tuples(
        st.just("configure"),
        queues,
        st.fixed_dictionaries(
            {},
            optional={
                "timeout": st.sampled_from([None, 1, 2.5, 6]),
                "max_attempts": st.sampled_from([None, 1, 2, 4]),
            },
        ),
    ),
    st.tuples(st.just("redrive"), queues),
    st.just(("requeue_expired",)),
)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self, api, clock):
        super().__init__()
        self.api = api
        self.clock = clock
        # Each example starts on empty tables, as a freshly started server would.
        Message.objects.all().delete()
        IdempotencyKey.objects.all().delete()
        Queue.objects.all().delete()
        runtime.reset()
        clock.move_to(START, tick=False)
        self.overrides = None
        self.steps = 0  # steps run, the initialization's included

    @initialize(
        pending_timeout=st.sampled_from([2_000, 5_000]),
        max_attempts=st.sampled_from([None, 1, 3]),
    )
    def start_the_server(self, pending_timeout, max_attempts):
        """PENDING_TIMEOUT (ms) and MQ_MAX_ATTEMPTS, the defaults of every queue."""
        self.overrides = override_settings(
            PENDING_TIMEOUT=pending_timeout, MQ_MAX_ATTEMPTS=max_attempts
        )
        self.overrides.enable()
        self.model = Model(pending_timeout / 1000, max_attempts)

    def teardown(self):
        """After the last step, ``GET /queues`` once more (unless a step failed)."""
        if self.overrides is None:
            return
        try:
            if self.steps % CHECK_EVERY and sys.exc_info()[1] is None:
                self.counts_by_state_agree_now()
        finally:
            self.overrides.disable()

    # Choosing what to act on

    def candidate_ids(self) -> list[int]:
        """Every id handed out so far (done, dead or alive, of either queue), and one never."""
        known = sorted(self.model.leases.keys() | self.model.messages.keys())
        return [*known, self.model.last_id + 1000]

    def pick_id(self, data) -> int:
        return data.draw(st.sampled_from(self.candidate_ids()))

    def pick_lease(self, data, message_id: int) -> str | None:
        tokens = self.model.leases.get(message_id, [])
        everyone = sorted({t for ts in self.model.leases.values() for t in ts})
        choice = data.draw(lease_choices)
        if choice == "none":
            return None
        if choice == "current" and tokens:
            return tokens[-1]
        if choice == "earlier" and len(tokens) > 1:
            return data.draw(st.sampled_from(tokens[:-1]))
        if choice == "other" and everyone:
            return data.draw(st.sampled_from(everyone))
        return UNKNOWN_LEASE

    # Checking answers

    def check_deliveries(self, delivered: list[dict], expected: list[dict]) -> None:
        """The app delivered what the model did, each with a fresh lease token."""
        fields = ("id", "payload", "attempts", "lease_expires_at")
        for body in delivered:
            assert list(body) == ["id", "payload", "lease", "lease_expires_at", "attempts"]
        got = [{**{f: d[f] for f in fields}, "payload": canonical(d["payload"])} for d in delivered]
        assert got == expected
        issued = {t for ts in self.model.leases.values() for t in ts}
        for body in delivered:
            assert LEASE_TOKEN.fullmatch(body["lease"]) and body["lease"] not in issued, body[
                "lease"
            ]
            self.model.hand_out(body["id"], body["lease"])

    @staticmethod
    def check_answer(response, error: str | None, body: dict) -> None:
        """``body`` with 200 when ``error`` is None, else that contract error."""
        if error is None:
            assert response.status_code == 200, response.content
            assert response.json() == body
        else:
            assert_error(response, STATUS[error], error)

    # Producers and consumers

    @rule(queue=queues, batch=st.lists(payloads, min_size=1, max_size=3), delay=delays)
    def send(self, queue, batch, delay):
        """One payload by the single send, more by the batch send."""
        fields = {} if delay is None else {"delay": delay}
        if len(batch) == 1:
            response = self.api.post(route(queue, "message/new"), {"payload": batch[0], **fields})
            assert response.status_code == 201, response.content
            assert list(response.json()) == ["id"]
            ids = [response.json()["id"]]
        else:
            response = self.api.post(route(queue, "messages/new"), {"payloads": batch, **fields})
            assert response.status_code == 201, response.content
            assert list(response.json()) == ["ids"]
            ids = response.json()["ids"]
        self.model.send(queue, batch, delay or 0, ids)

    @rule(queue=queues, count=st.sampled_from([None, 1, 3]), timeout=lease_timeouts)
    def next(self, queue, count, timeout):
        """``count`` None: the single next (200 or 204), else the batch next."""
        params = {} if timeout is None else {"timeout": timeout}
        expected = self.model.claim(queue, count or 1, timeout)
        if count is None:
            response = self.api.get(route(queue, "message/next"), data=params)
            if not expected:
                assert response.status_code == 204, response.content
                assert response.content == b""
                return
            assert response.status_code == 200, response.content
            delivered = [response.json()]
        else:
            response = self.api.get(route(queue, "messages/next"), data={"count": count, **params})
            assert response.status_code == 200, response.content
            assert list(response.json()) == ["messages"]
            delivered = response.json()["messages"]
        self.check_deliveries(delivered, expected)

    @rule(queue=queues, data=st.data(), batch=st.booleans())
    def done(self, queue, data, batch):
        """One delivery by the single done, or one to three by the batch done."""
        if not batch:
            message_id = self.pick_id(data)
            lease = self.pick_lease(data, message_id)
            response = self.api.post(
                route(queue, f"message/{message_id}/status/done"),
                None if lease is None else {"lease": lease},
            )
            error = self.model.done(queue, message_id, lease)
            self.check_answer(response, error, {"id": message_id, "status": "processed"})
            return
        ids = data.draw(
            st.lists(st.sampled_from(self.candidate_ids()), min_size=1, max_size=3, unique=True)
        )
        entries = [(i, self.pick_lease(data, i)) for i in ids]
        body = [{"id": i} if lease is None else {"id": i, "lease": lease} for i, lease in entries]
        response = self.api.post(route(queue, "messages/status/done"), {"messages": body})
        processed, failed = self.model.done_many(queue, entries)
        assert response.status_code == 200, response.content
        answer = response.json()
        assert list(answer) == ["processed", "failed"]
        assert answer["processed"] == processed
        assert [(f["id"], f["error"]) for f in answer["failed"]] == failed

    @rule(queue=queues, data=st.data(), delay=delays)
    def give_back(self, queue, data, delay):
        message_id = self.pick_id(data)
        lease = self.pick_lease(data, message_id)
        body = {
            key: value for key, value in [("lease", lease), ("delay", delay)] if value is not None
        }
        response = self.api.post(route(queue, f"message/{message_id}/status/ready"), body or None)
        result = self.model.give_back(queue, message_id, lease, delay or 0)
        if result in STATES:
            self.check_answer(response, None, {"id": message_id, "status": result})
        else:
            self.check_answer(response, result, {})

    @rule(queue=queues, data=st.data(), timeout=lease_timeouts)
    def extend_lease(self, queue, data, timeout):
        message_id = self.pick_id(data)
        lease = self.pick_lease(data, message_id)
        body = {
            key: value
            for key, value in [("lease", lease), ("timeout", timeout)]
            if value is not None
        }
        response = self.api.post(route(queue, f"message/{message_id}/lease"), body or None)
        result = self.model.extend(queue, message_id, lease, timeout)
        if result in STATUS:
            self.check_answer(response, result, {})
        else:
            expected = {"id": message_id, "lease": lease, "lease_expires_at": result}
            self.check_answer(response, None, expected)

    # Time and operators

    @rule(seconds=ticks)
    def tick(self, seconds):
        self.clock.shift(seconds)
        self.model.now += seconds

    @rule(action=operator_actions)
    def operate(self, action):
        """One of the operator's actions (see ``operator_actions``)."""
        match action:
            case ("configure", queue, changes):
                self.configure(queue, changes)
            case ("redrive", queue):
                self.redrive(queue)
            case ("requeue_expired",):
                self.requeue_expired()

    def configure(self, queue, changes):
        response = self.api.client.put(
            f"/queues/{queue}", json.dumps(changes), content_type="application/json"
        )
        self.check_answer(response, None, self.model.configure(queue, changes))

    def redrive(self, queue):
        response = self.api.post(f"/queues/{queue}/redrive")
        self.check_answer(response, None, {"queue": queue, "redriven": self.model.redrive(queue)})

    def requeue_expired(self):
        out = StringIO()
        call_command("requeue_expired", stdout=out)
        requeued, dead = self.model.requeue_expired()
        assert out.getvalue() == (
            f"{requeued} expired lease(s) requeued, {dead} message(s) dead, "
            "0 idempotency key(s) dropped\n"
        )

    # After every CHECK_EVERY-th step, and after the last (``teardown``)

    @invariant()
    def counts_by_state_agree(self):
        self.steps += 1
        if self.steps % CHECK_EVERY == 0:
            self.counts_by_state_agree_now()

    def counts_by_state_agree_now(self):
        response = self.api.get("/queues")
        assert response.status_code == 200, response.content
        expected = [self.model.stats(queue) for queue in sorted(self.model.queues)]
        assert response.json() == {"queues": expected}


# MQ_TEST_MODEL_EXAMPLES sequences (200 by hand, 1,000 in CI) of up to 30 steps.
# Longer sequences find more than many short ones: a planted bug (a lease that ran
# out sent its message to the back) needs a send, a next, a lease running out and
# another next on one queue, which 200 sequences of 10 steps never put together
# and 200 of 30 did.
MODEL_SETTINGS = settings(
    max_examples=int(os.environ.get("MQ_TEST_MODEL_EXAMPLES", "200")),
    stateful_step_count=30,
    deadline=None,
    database=None,  # no example database: nothing written to .hypothesis/, runs alike in CI
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.django_db(transaction=True)
def test_the_app_answers_every_sequence_of_operations_like_the_model(api, clock, caplog):
    # Thousands of expected 404s and 409s: a failure's report shows the steps, not their log.
    caplog.set_level(logging.ERROR, logger="django.request")
    run_state_machine_as_test(lambda: QueueMachine(api, clock), settings=MODEL_SETTINGS)
