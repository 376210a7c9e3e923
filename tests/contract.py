"""Assertions on the contract's shapes, shared by the test files."""


def assert_error(response, status: int, code: str) -> None:
    """A contract error: JSON ``{"error": code, "detail": <text>}`` with ``status``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["error", "detail"]
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
