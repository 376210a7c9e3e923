"""A database error reaches the client as a fixed sentence; the driver's own text
(addresses, file names, what it refused) goes only to the server's log."""

import logging

import pytest
from conftest import free_port
from contract import assert_error
from django.db import connection


@pytest.fixture
def unreachable_database(transactional_db, monkeypatch):
    """The test's connection pointed where no database is: for SQLite a file in a
    folder that does not exist, for the servers a port nobody listens on
    (PostgreSQL's pool giving up after a second)."""

    def disconnect():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()

    disconnect()
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/mq.sqlite3")
    else:
        monkeypatch.setitem(connection.settings_dict, "PORT", str(free_port()))
    if connection.vendor == "postgresql":
        options = connection.settings_dict["OPTIONS"]
        pool = {**options["pool"], "timeout": 1}
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", {**options, "pool": pool})
    yield
    disconnect()
    monkeypatch.undo()


@pytest.mark.parametrize(
    "method, url", [("get", "/health"), ("get", "/queues"), ("post", "/message/new")]
)
def test_an_unreachable_database_is_503_without_the_drivers_text(
    api, unreachable_database, caplog, method, url
):
    caplog.set_level(logging.ERROR, logger="messages_app.api.errors")

    response = getattr(api, method)(url, **({"data": {"payload": 1}} if method == "post" else {}))

    assert_error(response, 503, "database_unavailable")
    assert response.json()["detail"] == "the database did not answer; the server's log says why"
    [record] = [r for r in caplog.records if r.name == "messages_app.api.errors"]
    driver_text = str(record.exc_info[1])
    assert driver_text
    assert driver_text not in response.content.decode()
