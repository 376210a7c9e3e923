"""The pages (/info, /metrics, the admin) answer errors in JSON too, with CSRF
checks enforced as in production."""

import pytest
from conftest import RoutedClientHandler
from contract import assert_error
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser():
    """A client that, like a browser against the real server, gets CSRF checks."""
    client = Client(enforce_csrf_checks=True)
    client.handler = RoutedClientHandler(enforce_csrf_checks=True)
    return client


@pytest.mark.parametrize("url", ["/info", "/metrics"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_method_on_a_read_only_page_is_405_json(browser, stored, url, method):
    before = stored()

    response = getattr(browser, method)(url)

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"
    assert stored() == before


@pytest.mark.parametrize("url", ["/info", "/metrics"])
def test_head_on_a_read_only_page_is_answered(browser, url):
    assert browser.head(url).status_code == 200


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", "/admin/"),
        ("post", "/admin/login/"),
        ("put", "/admin/messages_app/message/"),
        ("delete", "/admin/messages_app/queue/"),
    ],
)
def test_an_admin_write_without_a_csrf_token_is_403_json(browser, method, url):
    response = getattr(browser, method)(url)

    assert_error(response, 403, "csrf_failed")


def test_logging_out_with_get_is_405_json(admin):
    response = admin.get("/admin/logout/")

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
