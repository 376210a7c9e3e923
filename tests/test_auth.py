"""MQ_API_TOKENS: when set, every queue call needs ``Authorization: Bearer <token>``;
/health stays open, and /info and /metrics are for staff and token bearers."""

import pytest

from messages_app.models import Message

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token"


@pytest.fixture
def tokens(settings):
    settings.MQ_API_TOKENS = [TOKEN, "second-token"]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_unauthorized(response) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


QUEUE_CALLS = {
    "send": ("post", "/message/new"),
    "next": ("get", "/message/next"),
    "done": ("post", "/message/1/status/done"),
    "send to a named queue": ("post", "/queues/jobs/message/new"),
    "next on a named queue": ("get", "/queues/jobs/message/next"),
    "list queues": ("get", "/queues"),
}


def call(api, method: str, url: str, **headers):
    if method == "get":
        return api.get(url, **headers)
    return api.post(url, {"payload": "x"}, **headers)


@pytest.fixture
def a_leased_message(api):
    """Sent and leased before tokens are required, so the refused calls have a target."""
    api.send("x")
    api.next()


@pytest.mark.parametrize("method, url", QUEUE_CALLS.values(), ids=QUEUE_CALLS.keys())
def test_a_queue_call_without_a_token_is_401(api, a_leased_message, tokens, stored, method, url):
    before = stored()

    assert_unauthorized(call(api, method, url))
    assert stored() == before


@pytest.mark.parametrize("method, url", QUEUE_CALLS.values(), ids=QUEUE_CALLS.keys())
def test_a_queue_call_with_a_wrong_token_is_401(api, a_leased_message, tokens, stored, method, url):
    before = stored()

    assert_unauthorized(call(api, method, url, **bearer("wrong")))
    assert stored() == before


@pytest.mark.parametrize(
    "header", [f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer ", f"Bearer {TOKEN}x", f"Token {TOKEN}"]
)
def test_a_malformed_authorization_header_is_401(api, tokens, stored, header):
    before = stored()

    assert_unauthorized(api.post("/message/new", {"payload": 1}, HTTP_AUTHORIZATION=header))
    assert stored() == before


def test_the_full_cycle_works_with_a_right_token(api, tokens):
    sent = api.post("/message/new", {"payload": "x"}, **bearer(TOKEN))
    delivered = api.get("/message/next", **bearer(TOKEN))
    done = api.post(f"/message/{sent.json()['id']}/status/done", **bearer(TOKEN))

    assert (sent.status_code, delivered.status_code, done.status_code) == (201, 200, 200)
    assert not Message.objects.exists()


def test_every_configured_token_is_accepted(api, tokens):
    response = api.post("/message/new", {"payload": "x"}, **bearer("second-token"))

    assert response.status_code == 201
    assert Message.objects.count() == 1


def test_the_bearer_scheme_is_case_insensitive(api, tokens):
    response = api.post("/message/new", {"payload": "x"}, HTTP_AUTHORIZATION=f"bearer {TOKEN}")

    assert response.status_code == 201


def test_queues_lists_with_a_right_token(api, tokens):
    assert api.get("/queues", **bearer(TOKEN)).status_code == 200


def test_without_tokens_configured_every_call_is_open(api, settings):
    settings.MQ_API_TOKENS = []

    assert api.post("/message/new", {"payload": "x"}).status_code == 201
    assert api.post("/message/new", {"payload": "x"}, **bearer("anything")).status_code == 201


def test_health_stays_open(api, tokens):
    response = api.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_info_without_a_token_redirects_to_the_admin_login(api, tokens):
    response = api.get("/info")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/info"


def test_info_keeps_its_query_string_through_the_login(api, tokens):
    response = api.get("/info?queue=jobs")

    assert response["Location"] == "/admin/login/?next=/info%3Fqueue%3Djobs"


def test_info_with_a_wrong_token_redirects_to_the_admin_login(api, tokens):
    assert api.get("/info", **bearer("wrong")).status_code == 302


def test_info_opens_to_a_right_token(api, tokens):
    response = api.get("/info", **bearer(TOKEN))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_info_opens_to_staff(admin, tokens):
    assert admin.get("/info").status_code == 200


def test_info_stays_closed_to_a_logged_in_user_who_is_not_staff(client, tokens, django_user_model):
    client.force_login(django_user_model.objects.create(username="someone"))

    assert client.get("/info").status_code == 302


def test_metrics_without_a_token_is_401(api, tokens):
    assert_unauthorized(api.get("/metrics"))


def test_metrics_opens_to_a_right_token(api, tokens):
    response = api.get("/metrics", **bearer(TOKEN))

    assert response.status_code == 200
    assert b"mq_messages" in response.content


def test_metrics_opens_to_staff(admin, tokens):
    assert admin.get("/metrics").status_code == 200
