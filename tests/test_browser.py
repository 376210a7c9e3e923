"""The console in a real browser: Debian's chromium driven by Playwright against
a real ``message-queue`` server, after real traffic.

Screenshots of the overview and of a queue page go to ``screenshots/``
(git-ignored). No browser is downloaded: the tests use /usr/bin/chromium
(``apt-get install chromium``; .ci/run installs it when missing).
"""

import os
import re
from pathlib import Path

import pytest
import requests
from conftest import ROOT
from playwright.sync_api import expect, sync_playwright

from clients import Consumer, Producer

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "screenshots"
PASSWORD = "a long browser-test password"


@pytest.fixture(scope="module")
def chromium():
    # Playwright's sync API runs an event loop in this thread, and Django refuses
    # ORM calls (the test database's set-up and flush) beside a running loop
    # unless told they are safe: they are, nothing else uses the connection.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def server(server_factory):
    return server_factory()


@pytest.fixture
def page(chromium):
    """A fresh browser page; it fails the test if the page logged a JavaScript
    error or an uncaught exception."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []

    def console(message):
        # Chromium asks every page for /favicon.ico; the admin's login page
        # (Django's own) names no icon, so that 404 is no error of the console.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == []


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def traffic(server) -> None:
    """Real traffic through the server: sends, deliveries, dones, a give-back, a
    delay, a death."""
    host, port = "127.0.0.1", server.port
    requests.put(f"{server.url}/queues/emails", json={"max_attempts": 1}, timeout=5)
    with Producer(host, port, queue="jobs") as jobs, Producer(host, port, queue="emails") as emails:
        jobs.add_new_messages([{"job": n} for n in range(12)])
        jobs.add_new_message({"job": "later"}, delay=600)
        emails.add_new_messages([f"mail {n}" for n in range(5)])
    with Consumer(host, port, queue="jobs") as consumer:
        for message in consumer.get_next_messages(4, timeout=300):
            consumer.notify_processed(message)
        consumer.get_next_messages(3, timeout=300)
    with Consumer(host, port, queue="emails") as consumer:
        consumer.give_back(consumer.get_next_message())  # its only attempt: dead


def cells(row) -> list[str]:
    return [cell.strip() for cell in row.locator("td").all_inner_texts()]


def test_the_overviews_numbers_are_those_of_get_queues(server, page):
    traffic(server)
    listed = requests.get(f"{server.url}/queues", timeout=5).json()["queues"]

    page.goto(f"{server.url}/info")

    headers = [h.strip() for h in page.locator("table.queues thead th").all_inner_texts()]
    shown = {}
    for row in page.locator("table.queues tbody tr").all():
        values = dict(zip(headers, cells(row), strict=True))
        shown[values["queue"]] = {s: int(values[s]) for s in ("ready", "leased", "delayed", "dead")}
    expected = {
        q["name"]: {s: q[s] for s in ("ready", "leased", "delayed", "dead")} for q in listed
    }
    assert shown == expected
    assert shown["jobs"] == {"ready": 5, "leased": 3, "delayed": 1, "dead": 0}
    screenshot(page, "overview")


def drawn(page, chart: str, series: str) -> list[float | None]:
    """The values a chart's line is drawn from (its data-values)."""
    line = page.locator(f'#chart-{chart} polyline[data-series="{series}"]')
    return [None if v == "" else float(v) for v in line.get_attribute("data-values").split(",")]


def test_a_chart_has_the_points_the_stats_api_returns(server_factory, page):
    # One process: each answer stores its own pending counts first, so the page
    # and the API read the same buckets.
    server = server_factory(MQ_WORKERS="1")
    traffic(server)
    stats_url = f"{server.url}/queues/jobs/stats?window=1h"
    for _ in range(3):  # a minute may turn, or the depth be sampled, between reads
        before = requests.get(stats_url, timeout=5).json()
        page.goto(f"{server.url}/info/jobs")
        lines = {
            (chart, series): drawn(page, chart, series)
            for chart, names in [
                ("flow", ("sent", "acked", "expired", "died")),
                ("depth", ("ready", "leased", "delayed", "dead")),
                ("processing", ("processing_p50", "processing_p99")),
            ]
            for series in names
        }
        if requests.get(stats_url, timeout=5).json() == before:
            break
    buckets = before["buckets"]
    assert len(buckets) == 60
    for (chart, series), values in lines.items():
        assert values == [pytest.approx(b[series]) for b in buckets], (chart, series)
    assert sum(b["sent"] for b in buckets) == 13
    assert sum(b["acked"] for b in buckets) == 4


def test_the_overview_updates_a_changed_count_by_itself(server, page):
    traffic(server)
    page.goto(f"{server.url}/info")
    ready = page.locator("table.queues tbody tr", has_text="jobs").locator("td").nth(1)
    expect(ready).to_have_text("5")
    page.evaluate("window.notReloaded = true")

    requests.post(f"{server.url}/queues/jobs/messages/new", json={"payloads": [1, 2]}, timeout=5)

    expect(ready).to_have_text("7", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True


def log_in(page, server, django_user_model) -> None:
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    page.goto(f"{server.url}/admin/login/?next=/info/jobs")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{server.url}/info/jobs")


def test_a_purge_through_the_console_asks_then_empties_the_queue(server, page, django_user_model):
    traffic(server)
    log_in(page, server, django_user_model)
    screenshot(page, "queue")

    page.click("text=Purge…")

    expect(page.locator("#consequence")).to_contain_text("9 messages will be deleted for good")
    assert requests.get(f"{server.url}/queues/jobs", timeout=5).json()["ready"] == 5
    page.click("text=Yes, purge jobs")
    expect(page.locator(".flash")).to_have_text("9 message(s) purged.")
    counts = requests.get(f"{server.url}/queues/jobs", timeout=5).json()
    assert [counts[s] for s in ("ready", "leased", "delayed", "dead")] == [0, 0, 0, 0]
    expect(page.locator("#count-total")).to_have_text("0")


def test_a_script_payload_renders_as_text(server, page):
    script = "<script>window.injected = true</script><b>bold</b>"
    requests.post(f"{server.url}/queues/jobs/message/new", json={"payload": script}, timeout=5)

    page.goto(f"{server.url}/info/jobs")

    expect(page.locator("table.browse pre")).to_have_text(f'"{script}"')
    assert page.evaluate("window.injected") is None
    assert page.locator("table.browse b").count() == 0


def test_the_queue_page_has_no_console_errors_across_a_refresh(server, page):
    traffic(server)
    page.goto(f"{server.url}/info/emails")
    dead = page.locator("#count-dead")
    expect(dead).to_have_text("1")

    requests.post(f"{server.url}/queues/emails/redrive", timeout=5)

    expect(dead).to_have_text("0", timeout=15_000)
    assert re.fullmatch(r"\d+", page.locator("#count-ready").inner_text())
