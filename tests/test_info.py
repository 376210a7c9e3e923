"""GET /info: the operators' HTML page, with counts per queue and state and an
escaped list of messages, 50 a page by keyset, in a fixed number of queries."""

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

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


def headed(parsed: Page) -> tuple[list[dict], list[dict]]:
    """The queues table and the messages table (empty when the page has none)."""
    queues = [t for t in parsed.tables if t and "queue" in t[0] and "ready" in t[0]]
    messages = [t for t in parsed.tables if t and "payload" in t[0]]
    return (queues[0] if queues else []), (messages[0] if messages else [])


def store(count: int, queue: str = "default") -> list[int]:
    """``count`` ready messages, stored directly: the page's paging, not sending, is tested."""
    Queue.objects.get_or_create(name=queue)
    Message.objects.bulk_create(
        Message(queue_id=queue, payload=f'"message {n}"') for n in range(count)
    )
    return list(Message.objects.filter(queue_id=queue).values_list("id", flat=True))


def shown_ids(parsed: Page) -> list[int]:
    return [int(row["id"]) for row in headed(parsed)[1]]


def test_info_is_an_html_page(api):
    response = api.get("/info")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<html" in response.content


def test_info_with_nothing_stored_says_so(api):
    html = page(api).html

    assert "No queues yet" in html
    assert "No messages" in html


def test_info_counts_each_queue_by_state(api, clock):
    ids = [api.send(n, queue="jobs") for n in range(4)]
    api.next(queue="jobs")
    Message.objects.filter(id=ids[1]).update(dead=True)
    Message.objects.filter(id=ids[2]).update(visible_at=timezone.now() + timedelta(hours=1))
    api.send("x")

    queues, _ = headed(page(api))

    counts = {
        row["queue"]: (row["ready"], row["leased"], row["delayed"], row["dead"]) for row in queues
    }
    assert counts == {"default": ("1", "0", "0", "0"), "jobs": ("1", "1", "1", "1")}


def test_info_shows_the_age_of_each_queues_oldest_message(api, clock):
    api.send("old")
    clock.shift(timedelta(minutes=5))

    queues, _ = headed(page(api))

    assert queues[0]["oldest message"] == "5\xa0minutes old"


def test_info_lists_messages_with_their_queue_state_attempts_and_payload(api, clock):
    leased = api.send({"n": 1}, queue="jobs")
    api.next(queue="jobs")
    ready = api.send("hello")

    _, messages = headed(page(api))

    assert [(r["id"], r["queue"], r["state"], r["attempts"], r["payload"]) for r in messages] == [
        (str(leased), "jobs", "leased", "1", '{"n":1}'),
        (str(ready), "default", "ready", "0", '"hello"'),
    ]


def test_payloads_are_html_escaped(api):
    api.send("<script>alert(1)</script>")

    response = api.get("/info")

    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_queue_names_in_links_are_url_encoded(api):
    api.send("x", queue="a.b-c_d")

    assert page(api).links["a.b-c_d"] == "?queue=a.b-c_d"


def test_a_long_payload_is_shown_truncated(api):
    api.send("x" * 1000)

    _, messages = headed(page(api))

    assert len(messages[0]["payload"]) <= 200


def test_info_shows_50_messages_a_page_with_a_next_page_link(api):
    ids = store(120)

    first = page(api)

    assert shown_ids(first) == ids[:50]
    assert first.links["next page"] == f"?after={ids[49]}"


def test_the_next_page_link_leads_to_the_following_50(api):
    ids = store(120)

    second = page(api, "/info" + page(api).links["next page"])

    assert shown_ids(second) == ids[50:100]
    assert "first page" in second.links


def test_the_last_page_has_no_next_page_link(api):
    ids = store(120)

    last = page(api, f"/info?after={ids[99]}")

    assert shown_ids(last) == ids[100:]
    assert "next page" not in last.links


def test_exactly_50_messages_fit_on_one_page(api):
    store(50)

    assert "next page" not in page(api).links


def test_info_filters_messages_by_queue(api):
    store(3, "emails")
    jobs = store(3, "jobs")

    assert shown_ids(page(api, "/info?queue=jobs")) == jobs


def test_the_next_page_link_keeps_the_queue_filter(api):
    store(10, "emails")
    jobs = store(60, "jobs")

    filtered = page(api, "/info?queue=jobs")

    assert filtered.links["next page"] == f"?queue=jobs&after={jobs[49]}"
    assert shown_ids(page(api, "/info" + filtered.links["next page"])) == jobs[50:]


def test_the_queue_counts_stay_complete_when_messages_are_filtered(api):
    store(3, "emails")
    store(3, "jobs")

    queues, _ = headed(page(api, "/info?queue=jobs"))

    assert [row["queue"] for row in queues] == ["emails", "jobs"]


@pytest.mark.parametrize("queue", ["unknown", "not a name", "%00", "%3Cscript%3E"])
def test_a_queue_filter_matching_no_queue_shows_no_messages(api, queue):
    store(3)

    response = api.get(f"/info?queue={queue}")

    assert response.status_code == 200
    assert shown_ids(Page(response.content.decode())) == []
    assert b"<script>" not in response.content


@pytest.mark.parametrize("after", ["abc", "-5", "", "%00", "1.5"])
def test_an_unreadable_after_shows_the_first_page(api, after):
    ids = store(3)

    assert shown_ids(page(api, f"/info?after={after}")) == ids


def test_an_after_beyond_every_id_shows_no_messages(api):
    store(3)

    assert shown_ids(page(api, "/info?after=99999999999999999999999")) == []


@pytest.mark.parametrize("stored_messages", [0, 5, 200])
def test_info_takes_a_fixed_number_of_queries_however_many_messages(
    api, django_assert_max_num_queries, stored_messages
):
    for queue in ("a", "b", "c"):
        store(stored_messages, queue)

    # queues, counts by state (3: all, not yet visible, spent), first message, the page
    with django_assert_max_num_queries(6):
        assert api.get("/info").status_code == 200
