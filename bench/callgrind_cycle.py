"""Instructions per seed cycle (send, next, done), in process, under callgrind.

Calls the API through Django's test client (the production handler without
middleware, as mq_project/wsgi.py routes API paths) on a fresh SQLite file, in
a loop of CYCLES cycles. Startup is the same whatever the number of cycles, so
the instructions of one cycle are the difference of two runs divided by the
difference of their cycles::

    for n in 200 600; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
            python bench/callgrind_cycle.py $n 2>&1 | grep -E "Collected|cycles"
    done

Run with PYTHONHASHSEED=0. The counters' background flush is off
(MQ_COUNTERS_FLUSH=0): it runs once per interval whatever the traffic, not
per request.
"""

import gc
import json
import os
import sys
import tempfile


def main() -> None:
    cycles = int(sys.argv[1])
    directory = tempfile.mkdtemp(prefix="mq-callgrind-")
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/mq.sqlite3"
    os.environ["SECRET_KEY"] = "callgrind"
    os.environ["MQ_COUNTERS_FLUSH"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "mq_project.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.client import ClientHandler

    from mq_project.handlers import WithoutMiddleware

    call_command("migrate", verbosity=0)

    class APIHandler(WithoutMiddleware, ClientHandler):
        pass

    client = Client()
    client.handler = APIHandler()
    body = json.dumps({"payload": "x" * 100})
    client.post("/message/new", body, content_type="application/json")  # imports, caches
    # A full collection walks every object start-up made (tens of millions of
    # instructions), a few times per run but not in step with the cycles: the
    # per-cycle difference of two runs then varied by 9 %. Frozen, they are
    # left out of every collection.
    gc.collect()
    gc.freeze()
    for _ in range(cycles):
        sent = client.post("/message/new", body, content_type="application/json")
        delivery = client.get("/message/next").json()
        done = client.post(f"/message/{delivery['id']}/status/done")
        assert (sent.status_code, done.status_code) == (201, 200)
    print(f"{cycles} cycles", file=sys.stderr)  # noqa: T201


if __name__ == "__main__":
    main()
