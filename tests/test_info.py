"""GET /info: the console's overview, a row per queue (counts by state, the
oldest message's age, the effective settings) and a totals row, in a fixed
number of queries however many messages are stored."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from messages_app import runtime
from messages_app.models import Message, Queue

pytestmark = pytest.mark.django_db


class Page(HTMLParser):
    """The tables and links of a page: each table a list of {header: cell text} rows."""

    def __init__(self, html: str):
        super().__init__()
        self.html = html
        self.tables: list[list[dict]] = []
        self.links: dict[str, str] = {}
        self._headers: list[str] = []
        self._row: list[str] | None = None
        self._header_row = False
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._link_text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row, self._header_row = [], False
        elif tag in ("td", "th"):
            self._cell = []
            self._header_row = tag == "th"
        elif tag == "a":
            self._href, self._link_text = dict(attrs).get("href"), []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._header_row:
                self._headers = self._row
            else:
                self.tables[-1].append(dict(zip(self._headers, self._row, strict=True)))
            self._row = None
        elif tag == "a" and self._href is not None:
            self.links["".join(self._link_text).strip()] = self._href
            self._href = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._link_text.append(data)


def page(api, url: str = "/info") -> Page:
    response = api.get(url)
    assert response.status_code == 200
    return Page(response.content.decode())


def overview(api, url: str = "/info") -> tuple[dict[str, dict], dict]:
    """The overview's rows by queue name, and its totals row."""
    tables = [t for t in page(api, url).tables if t and "ready" in t[0]]
    rows = {row["queue"]: row for row in tables[0]} if tables else {}
    return rows, rows.pop("total", {})


def store(count: int, queue: str = "default") -> list[int]:
    """``count`` ready messages, stored directly (quicker than sending them)."""
    Queue.objects.get_or_create(name=queue)
    Message.objects.bulk_create(
        Message(queue_id=queue, payload=f'"message {n}"') for n in range(count)
    )
    return list(Message.objects.filter(queue_id=queue).values_list("id", flat=True))


def test_info_is_an_html_page(api):
    response = api.get("/info")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<html" in response.content


def test_info_with_nothing_stored_says_so(api):
    assert "No queues yet" in page(api).html


def test_info_counts_each_queue_by_state(api, clock):
    ids = [api.send(n, queue="jobs") for n in range(4)]
    api.next(queue="jobs")
    Message.objects.filter(id=ids[1]).update(dead=True)
    Message.objects.filter(id=ids[2]).update(visible_at=timezone.now() + timedelta(hours=1))
    api.send("x")

    rows, _ = overview(api)

    counts = {name: (r["ready"], r["leased"], r["delayed"], r["dead"]) for name, r in rows.items()}
    assert counts == {"default": ("1", "0", "0", "0"), "jobs": ("1", "1", "1", "1")}


def test_the_totals_row_adds_up_every_queue(api, clock):
    for n in range(3):
        api.send(n, queue="jobs")
    api.next(queue="jobs")
    api.send("x")
    store(2, "emails")

    _, totals = overview(api)

    assert (totals["ready"], totals["leased"], totals["delayed"], totals["dead"]) == (
        "5",
        "1",
        "0",
        "0",
    )


@pytest.mark.parametrize(
    "seconds, shown",
    [(4.3, "4.3 s"), (42, "42 s"), (300, "5 min"), (90, "1 min 30 s"), (7380, "2 h 3 min")],
)
def test_info_shows_the_oldest_messages_age_precisely(api, clock, seconds, shown):
    api.send("old", queue="jobs")
    clock.shift(timedelta(seconds=seconds))
    api.send("new", queue="jobs")

    rows, totals = overview(api)

    assert rows["jobs"]["oldest message"] == shown
    assert totals["oldest message"] == shown


def test_the_totals_row_shows_the_oldest_message_of_all_queues(api, clock):
    api.send("old", queue="a")
    clock.shift(timedelta(minutes=3))
    api.send("new", queue="b")

    rows, totals = overview(api)

    assert (rows["a"]["oldest message"], rows["b"]["oldest message"]) == ("3 min", "0.0 s")
    assert totals["oldest message"] == "3 min"


def test_an_empty_queue_has_no_oldest_message(api):
    message_id = api.send("x")
    api.done(message_id, api.next().json()["lease"])

    rows, _ = overview(api)

    assert rows["default"]["oldest message"] == "—"


def test_info_shows_each_queues_effective_lease_timeout_and_max_attempts(api, settings):
    settings.PENDING_TIMEOUT = 10000
    settings.MQ_MAX_ATTEMPTS = None
    api.send("x")
    api.client.put(
        "/queues/jobs",
        '{"timeout": 2.5, "max_attempts": 3}',
        content_type="application/json",
    )

    rows, _ = overview(api)

    assert (rows["default"]["lease timeout"], rows["default"]["max attempts"]) == (
        "10 s",
        "unlimited",
    )
    assert (rows["jobs"]["lease timeout"], rows["jobs"]["max attempts"]) == ("2.5 s", "3")


def test_each_queue_links_to_its_page(api):
    api.send("x", queue="a.b-c_d")

    assert page(api).links["a.b-c_d"] == "/info/a.b-c_d"


def test_the_old_queue_filter_leads_to_the_queues_page(api):
    response = api.get("/info?queue=jobs")

    assert response.status_code == 302
    assert response["Location"] == "/info/jobs"


@pytest.mark.parametrize("queue", ["not a name", "%00", "%3Cscript%3E"])
def test_a_queue_filter_no_queue_can_have_shows_the_overview(api, queue):
    api.send("x", queue="jobs")

    rows, _ = overview(api, f"/info?queue={queue}")

    assert list(rows) == ["jobs"]


def test_the_overview_marks_its_table_for_the_live_refresh(api):
    api.send("x")

    html = page(api).html

    assert '<div id="overview" data-live>' in html
    assert "fetch(location.href" in html


@pytest.mark.parametrize("stored_messages", [0, 5, 200])
def test_info_takes_a_fixed_number_of_queries_however_many_messages(
    api, django_assert_max_num_queries, stored_messages
):
    for queue in ("a", "b", "c"):
        store(stored_messages, queue)

    # queues, counts by state (3: all, not yet visible, spent), first message,
    # and each queue's last hour (2 each: the queue, its buckets)
    with django_assert_max_num_queries(5 + 2 * 3):
        assert api.get("/info").status_code == 200


def test_info_shows_messages_sent_and_done_over_the_last_minute(api, clock):
    for n in range(3):
        api.send(n, queue="jobs")
    delivery = api.next(queue="jobs").json()
    api.done(delivery["id"], delivery["lease"], queue="jobs")
    api.send("x", queue="other")

    rows, totals = overview(api)

    assert (rows["jobs"]["in /min"], rows["jobs"]["out /min"]) == ("3", "1")
    assert (totals["in /min"], totals["out /min"]) == ("4", "1")


def test_the_last_minute_takes_its_share_of_the_previous_minute(api, clock):
    for n in range(4):
        api.send(n, queue="jobs")
    runtime.current().counters.flush()  # a count lands in the minute it is stored
    # 12:01:30: the last 60 s are half of 12:00-12:01 (assumed even) and 12:01-12:01:30.
    clock.shift(90)
    api.send("now", queue="jobs")

    rows, _ = overview(api)

    assert rows["jobs"]["in /min"] == "3"


def test_info_draws_each_queues_last_hour(api, clock):
    clock.shift(-60)
    api.send("a minute ago", queue="jobs")
    runtime.current().counters.flush()  # a count lands in the minute it is stored
    clock.shift(60)
    api.send("now", queue="jobs")
    runtime.current().counters.housekeeping()

    html = page(api).html

    sent = re.search(r'data-series="sent" data-values="([^"]*)"', html).group(1).split(",")
    depth = re.search(r'data-series="depth" data-values="([^"]*)"', html).group(1).split(",")
    assert sent == ["0"] * 58 + ["1", "1"]
    assert depth == [""] * 59 + ["2"]
