"""Admin logins are throttled (django-axes): a username guessed at from one address
is locked out after MQ_LOGIN_FAILURES wrong passwords, until a quiet cool-off."""

import pytest
import requests
from contract import assert_error
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "right-horse-battery"


@pytest.fixture
def operator(settings, clock, django_user_model):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("operator", password=PASSWORD)


def log_in(client, password: str, username: str = "operator", address: str = "127.0.0.1"):
    """Submit the admin's login form."""
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def fail(client, times: int, **who) -> None:
    for _ in range(times):
        response = log_in(client, "wrong", **who)
        assert response.status_code == 200  # the form again, with its error
        assert "Please enter the correct username and password" in response.content.decode()


def test_wrong_passwords_below_the_limit_leave_the_right_one_working(client, operator):
    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)

    response = log_in(client, PASSWORD)

    assert response.status_code == 302
    assert logged_in(client)


def test_at_the_limit_even_the_right_password_is_refused_with_429_json(client, operator):
    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)
    assert_error(log_in(client, "wrong"), 429, "too_many_logins")

    response = log_in(client, PASSWORD)

    assert_error(response, 429, "too_many_logins")
    assert response["Retry-After"] == str(int(django_settings.AXES_COOLOFF_TIME.total_seconds()))
    assert not logged_in(client)


def test_the_lockout_ends_after_the_cool_off(client, operator, clock):
    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)
    log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 429

    clock.shift(django_settings.AXES_COOLOFF_TIME.total_seconds() + 1)

    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_lockout_is_per_username_and_address(client, operator, django_user_model):
    django_user_model.objects.create_superuser("other", password=PASSWORD)
    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)
    log_in(client, "wrong")

    assert log_in(client, PASSWORD, address="10.0.0.2").status_code == 302
    client.logout()
    assert log_in(client, PASSWORD, username="other").status_code == 302


def test_a_right_password_resets_the_count(client, operator):
    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()

    fail(client, django_settings.AXES_FAILURE_LIMIT - 1)

    assert log_in(client, PASSWORD).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_fifty_guesses_at_a_real_server_are_refused_after_the_limit(
    server_factory, django_user_model
):
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    server = server_factory()
    session = requests.Session()
    session.get(server.url + LOGIN)

    statuses = [
        session.post(
            server.url + LOGIN,
            data={
                "username": "operator",
                "password": f"guess-{n}",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
        ).status_code
        for n in range(50)
    ]

    limit = django_settings.AXES_FAILURE_LIMIT
    assert statuses == [200] * (limit - 1) + [429] * (50 - limit + 1)
