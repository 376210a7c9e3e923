"""The OpenAPI schema at /api/schema/ describes every API route, and Swagger UI and
Redoc at /api/docs/ are served by the app itself, with no CDN. (CI also runs
schemathesis against a live server with this schema: .ci/fuzz.py.)"""

import re

import pytest
import requests

pytestmark = pytest.mark.django_db

MESSAGE_ROUTES = [
    ("post", "message/new"),
    ("get", "message/next"),
    ("post", "message/{id}/status/done"),
    ("post", "message/{id}/status/ready"),
    ("post", "message/{id}/lease"),
    ("post", "messages/new"),
    ("get", "messages/next"),
    ("post", "messages/status/done"),
]
OPERATIONS = sorted(
    [(method, f"/{route}") for method, route in MESSAGE_ROUTES]
    + [(method, f"/queues/{{queue}}/{route}") for method, route in MESSAGE_ROUTES]
    + [
        ("get", "/queues"),
        ("get", "/queues/{queue}"),
        ("put", "/queues/{queue}"),
        ("delete", "/queues/{queue}"),
        ("post", "/queues/{queue}/redrive"),
        ("get", "/queues/{queue}/stats"),
        ("get", "/health"),
    ]
)


@pytest.fixture
def schema(api) -> dict:
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def test_the_schema_is_openapi_3_with_every_api_operation_and_nothing_else(schema):
    assert schema["openapi"].startswith("3.")
    assert sorted((method, path) for method, path, _ in operations(schema)) == OPERATIONS


def test_every_error_answer_is_the_error_shape(schema):
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"error", "detail"}
    for _, _, operation in operations(schema):
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert answer["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }


def test_queue_routes_say_a_token_may_be_needed(schema):
    for _, path, operation in operations(schema):
        if path == "/health":
            assert "security" not in operation and "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"bearerToken": []}, {}]
            assert "401" in operation["responses"]


def test_next_answers_a_delivery_or_204_with_no_body(schema):
    responses = schema["paths"]["/message/next"]["get"]["responses"]

    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Delivery"
    }
    assert "content" not in responses["204"]
    parameters = {p["name"] for p in schema["paths"]["/message/next"]["get"]["parameters"]}
    assert parameters == {"timeout", "wait"}


def test_a_send_takes_any_json_payload_or_a_form_and_answers_201_or_200(schema):
    send = schema["paths"]["/message/new"]["post"]
    payload = schema["components"]["schemas"]["SendJSON"]["properties"]["payload"]

    assert set(send["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    assert "type" not in payload  # any JSON value
    assert {"200", "201", "413", "415"} <= set(send["responses"])


@pytest.mark.parametrize("url", ["/api/docs/", "/api/docs/redoc/"])
def test_the_docs_load_their_scripts_from_this_server(api, url):
    response = api.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("/static/drf_spectacular_sidecar/" in source for source in sources)
    assert not [source for source in sources if source.startswith(("http:", "https:", "//"))]
    assert "/api/schema/" in page


@pytest.mark.django_db(transaction=True)
def test_a_real_server_serves_the_docs_and_their_scripts(server_factory):
    server = server_factory()

    for url in ["/api/docs/", "/api/docs/redoc/"]:
        page = requests.get(server.url + url, timeout=10)
        scripts = re.findall(r'src="([^"]+\.js)"', page.text)

        assert page.status_code == 200 and scripts
        for script in scripts:
            assert requests.get(server.url + script, timeout=10).status_code == 200
