"""``message-queue``: apply migrations, then serve the app with granian (WSGI)."""

import os
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mq_project.settings")
    import django

    django.setup()

    import django.contrib.admin
    import drf_spectacular_sidecar
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from granian import Granian
    from granian.constants import Interfaces

    call_command("migrate", interactive=False, verbosity=0)
    # The server forks its workers from this process: none may inherit an open
    # connection (or a pool of them), or two processes would talk on one socket.
    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()

    admin_static = Path(django.contrib.admin.__file__).parent / "static" / "admin"
    # Swagger UI's and Redoc's scripts, for /api/docs/.
    sidecar_static = (
        Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar"
    )
    print(f"message-queue: serving on http://{settings.HOST}:{settings.PORT}", flush=True)  # noqa: T201
    Granian(
        "mq_project.wsgi:application",
        address=settings.HOST,
        port=settings.PORT,
        interface=Interfaces.WSGI,
        workers=settings.MQ_WORKERS,
        blocking_threads=settings.MQ_THREADS,
        static_path_route=["/static/admin", "/static/drf_spectacular_sidecar"],
        static_path_mount=[admin_static, sidecar_static],
        log_level="error",
        # A pending long-poll must not hold up a stop for its whole wait.
        workers_kill_timeout=3,
    ).serve()


if __name__ == "__main__":
    main()
