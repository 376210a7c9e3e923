"""CPU per request of the hot routes, in process: no server, no sockets, no client.

Calls the production WSGI application (``mq_project.wsgi.application``, what
granian calls, less the access line that ``message-queue`` writes around it)
with the environ granian builds for the load generator's requests, reads the
response and closes it as a server does.
``product`` sends the load generator's requests in blocks: CYCLES sends (a
100-byte payload), CYCLES nexts, CYCLES dones (each with its lease), each
block timed with the calling thread's CPU clock (``time.thread_time``, read
once per block: a read costs several µs here); ROUNDS rounds after a
warm-up, the median of the rounds' µs per request. On PostgreSQL it also
reads the CPU the database's backends spent per request, from
``/proc/<pid>/schedstat`` (nanoseconds; ``/proc/<pid>/stat`` counts 10 ms
ticks) of every client backend on the database (the pool's connections, whose
pids ``pg_stat_activity`` gives), so it must run on the database's machine.
``bare_json`` / ``bare_drf`` time a GET of bench/bare_app.py's bare Django view
and bare DRF APIView the same way (their settings differ from the product's:
each runs in its own process)::

    python bench/inprocess.py product sqlite:///tmp/x.sqlite3
    python bench/inprocess.py product postgres://postgres@127.0.0.1:5432/mq_bench
    python bench/inprocess.py bare_json

It prints one JSON object: microseconds per request. The database must exist
(it is migrated here) and should be empty: the rounds leave it as they found it.
bench/run.py's ``inprocess`` workload runs all three on a fresh database.

A full garbage collection walks every object start-up made (many more than a
request's): after the warm-up they are frozen (``gc.freeze``), as in
bench/callgrind_cycle.py, so collections cost what a request's garbage costs.
The counters' background flush is off (``MQ_COUNTERS_FLUSH=0``): it runs once
per interval whatever the traffic, not per request.
"""

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_payload  # noqa: E402 (bench/ on the path)

ROOT = Path(__file__).resolve().parent.parent


def payload(index: int) -> bytes:
    return make_payload(index, time.time()).encode()


def environ(method: str, path: str, body: bytes = b"") -> dict:
    """A WSGI environ as granian builds it for one of the load generator's requests."""
    path, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "18400",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:18400",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def respond(application, env: dict) -> tuple[int, bytes]:
    """Call a WSGI application as a server does: start_response, body, close."""
    statuses = []
    result = application(env, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(statuses[0][:3]), content


def block(application, environs: list[dict], expected: int, backends=None):
    """Every request of ``environs`` in turn: (CPU seconds of this thread, of the
    database backends, the answers' bodies). The environs are built beforehand,
    as the server builds them before calling the app, and the clock is read once
    per block (a read costs several µs here)."""
    answers = []
    database = backends.seconds() if backends else 0.0
    started = time.thread_time()
    for env in environs:
        answers.append(respond(application, env))
    spent = time.thread_time() - started
    database = backends.seconds() - database if backends else 0.0
    for status, body in answers:
        assert status == expected, (env["PATH_INFO"], status, body)
    return spent, database, [body for _, body in answers]


class Backends:
    """CPU time of the PostgreSQL backends serving the app."""

    def __init__(self, url: str):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        self.fds = [os.open(f"/proc/{pid}/schedstat", os.O_RDONLY) for (pid,) in pids]

    def seconds(self) -> float:
        return sum(int(os.pread(fd, 64, 0).split()[0]) for fd in self.fds) / 1e9


def product(url: str, cycles: int, rounds: int) -> dict:
    os.environ.update(
        DATABASE_URL=url,
        SECRET_KEY="bench-only-secret-key",
        MQ_COUNTERS_FLUSH="0",
        # Leases outlive a block of nexts however slow the machine: the dones find them.
        PENDING_TIMEOUT="3600000",
        DJANGO_SETTINGS_MODULE="mq_project.settings",
    )
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from mq_project.wsgi import application

    backends = None  # until the warm-up has opened the app's connections
    kinds = ("send", "next", "done")
    client = {kind: [] for kind in kinds}
    database = {kind: [] for kind in kinds}

    def rounds_of(count: int) -> dict:
        """``count`` sends, then as many nexts, then as many dones (with their
        leases), as the load generator sends them: the CPU of each kind, per request."""
        sends = [
            environ("POST", "/message/new", b'{"payload":' + payload(k) + b"}")
            for k in range(count)
        ]
        spent = {}
        spent["send"] = block(application, sends, 201, backends)
        nexts = [environ("GET", "/message/next") for _ in range(count)]
        spent["next"] = block(application, nexts, 200, backends)
        dones = []
        for message in map(json.loads, spent["next"][2]):
            lease = f'{{"lease":"{message["lease"]}"}}'.encode()
            dones.append(environ("POST", f"/message/{message['id']}/status/done", lease))
        spent["done"] = block(application, dones, 200, backends)
        return spent

    rounds_of(50)
    gc.collect()
    gc.freeze()
    if url.startswith("postgres"):
        backends = Backends(url)
    for _ in range(rounds):
        spent = rounds_of(cycles)
        for kind in kinds:
            client[kind].append(spent[kind][0] / cycles * 1e6)
            database[kind].append(spent[kind][1] / cycles * 1e6)
    out = summary(client)
    if backends:
        out["database"] = summary(database)
    return out


def summary(rounds: dict) -> dict:
    """Median over the rounds of each kind's µs per request, and the mean of the kinds."""
    out = {kind: statistics.median(values) for kind, values in rounds.items()}
    out["mean"] = statistics.mean(out.values())
    return out


def bare(path: str, requests: int, rounds: int) -> dict:
    from bare_app import application

    block(application, [environ("GET", path) for _ in range(100)], 200)
    gc.collect()
    gc.freeze()
    means = []
    for _ in range(rounds):
        spent, _, _ = block(application, [environ("GET", path) for _ in range(requests)], 200)
        means.append(spent / requests * 1e6)
    return {"get": statistics.median(means)}


def measure(target: str, url: str | None = None) -> dict:
    """Run ``target`` in a process of its own (the bare apps and the product
    configure Django differently); its JSON result."""
    argv = [sys.executable, __file__, target, *([url] if url else [])]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"{target} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=["product", "bare_json", "bare_drf"])
    parser.add_argument("database_url", nargs="?", help="product only")
    parser.add_argument("--cycles", type=int, default=300, help="per round (default 300)")
    parser.add_argument("--rounds", type=int, default=7, help="default 7; the median is kept")
    args = parser.parse_args()
    if args.target == "product":
        if not args.database_url:
            parser.error("product needs a database URL")
        result = product(args.database_url, args.cycles, args.rounds)
    else:
        path = {"bare_json": "/json", "bare_drf": "/drf"}[args.target]
        result = bare(path, args.cycles * 3, args.rounds)
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
