"""``message-queue``: apply migrations, then serve the app with granian (WSGI)."""

import argparse
import logging
import os
import resource
import socket
import sys
from importlib.metadata import version

# By name: run as `python -m mq_project.cli` too, __name__ would be "__main__".
logger = logging.getLogger("mq_project.cli")

# Every line of the server's log has a time (the access lines too: mq_project.access).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="message-queue",
        description="Serve the message queue over HTTP (granian, WSGI), after applying "
        "pending migrations. Each option overrides its environment variable; the "
        "README's Configuration lists the others.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('message-queue')}"
    )
    parser.add_argument("--host", help="address to listen on (HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (PORT; default 3000)")
    parser.add_argument("--workers", type=int, help="server processes (MQ_WORKERS; default 2)")
    parser.add_argument(
        "--threads", type=int, help="threads per process (MQ_THREADS; default 1024)"
    )
    return parser.parse_args(argv)


def granian_logging() -> dict:
    """granian's own log, with a time on each line."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"generic": {"format": LOG_FORMAT}},
        "handlers": {"console": {**handler, "formatter": "generic"}},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }


def check_address_free(host: str, port: int) -> None:
    """Exit at once if something listens on ``host:port``. granian binds with
    SO_REUSEPORT, so a second server would otherwise share the port silently;
    a socket bound without it fails on a port anyone listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Connections of an earlier run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sys.exit(f"message-queue: cannot listen on {host}:{port}: {exc.strerror}")


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor: allow as many as the system lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name, value in [
        ("HOST", args.host),
        ("PORT", args.port),
        ("MQ_WORKERS", args.workers),
        ("MQ_THREADS", args.threads),
    ]:
        if value is not None:
            os.environ[name] = str(value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mq_project.settings")
    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.urls import get_resolver
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    check_address_free(settings.HOST, settings.PORT)
    raise_open_file_limit()
    call_command("migrate", interactive=False, verbosity=0)
    # Import the views (the URLs import them) here, before granian forks the
    # workers: each then starts with them loaded, instead of importing them on
    # its first request (~0.7 s here, which that request waited for).
    get_resolver().url_patterns  # noqa: B018
    # The server forks its workers from this process: none may inherit an open
    # connection (or a pool of them), or two processes would talk on one socket.
    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()

    address = f"http://{settings.HOST}:{settings.PORT}"
    server = Granian(
        "mq_project.wsgi:served",
        address=settings.HOST,
        port=settings.PORT,
        interface=Interfaces.WSGI,
        # HTTP/1.1 only: telling HTTP/2 from HTTP/1 waits for the first bytes
        # without any timeout, so a connection that sends nothing stayed open.
        http=HTTPModes.http1,
        workers=settings.MQ_WORKERS,
        blocking_threads=settings.MQ_THREADS,
        # An open connection holds one of these while it lasts, idle or parked
        # in a long-poll; beyond them new connections wait to be accepted.
        backpressure=settings.MQ_CONNECTIONS,
        backlog=2048,
        # A client gets MQ_CLIENT_TIMEOUT to send a request's headers, and an
        # idle keep-alive connection is closed after as long.
        http1_settings=HTTP1Settings(
            header_read_timeout=min(max(int(settings.MQ_CLIENT_TIMEOUT * 1000), 1), 60_000)
        ),
        log_level="warning",
        log_dictconfig=granian_logging(),
        # The access lines are the app's (mq_project.access), not granian's.
        log_access=False,
        # A pending long-poll must not hold up a stop for its whole wait.
        workers_kill_timeout=3,
    )
    server.on_shutdown(lambda: logger.info("message-queue: stopped serving on %s", address))
    logger.info(
        "message-queue %s: serving on %s (%d processes, up to %d threads each)",
        version("message-queue"),
        address,
        settings.MQ_WORKERS,
        settings.MQ_THREADS,
    )
    server.serve()


if __name__ == "__main__":
    main()
