"""The benchmark, in one command: our server on SQLite and PostgreSQL side by
side with RabbitMQ, the raw claim SQL and a bare Django view, on this machine.

    python bench/run.py                     # the full run: 3 runs of everything
    python bench/run.py --quick             # smoke sizes, 1 run
    python bench/run.py --only seed,rabbit --databases sqlite --runs 5
    python bench/run.py --compare-servers   # granian vs gunicorn on the seed cycle

Workloads (--only): ceiling, inprocess, rabbit, seed, batch, sqs, rawsql, scaleout,
backlog, rss, longpoll (sqs: the seed cycle's shape through our /sqs endpoint
with boto3, one at a time and in batches of 10). See bench/README.md for what
each does and how to read the table.
"""

import argparse
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime
from importlib import metadata
from pathlib import Path

import db
import inprocess
import loadgen
import psutil
import rabbit
import rawsql
import sqs
from common import wait_until
from report import NAMES, bench_report, servers_report
from server import (
    ROOT,
    Server,
    bare_command,
    canned_command,
    http_get,
    migrate,
    product_command,
    product_shape,
)

WORKLOADS = "ceiling,inprocess,rabbit,seed,batch,sqs,rawsql,scaleout,backlog,rss,longpoll".split(
    ","
)
DATABASES = ["sqlite", "postgres"]
BATCH = 100
SERVERS = (
    "granian:1x16,granian:2x8,granian:2x32,granian:2x128,granian:4x8,"
    "gunicorn:2x8,gunicorn:2x32,gunicorn:4x8"
)

# Sizes of the full run, and of --quick (a smoke run).
FULL = {
    "runs": 3,
    "messages": 20_000,
    "batch_messages": 100_000,
    "backlog": 1_000_000,
    "claims": 10_000,
    "rss_first": 10_000,
    "rss_total": 1_000_000,
    "longpoll_seconds": 40.0,
    "ceiling_seconds": 10.0,
}
QUICK = {
    "runs": 1,
    "messages": 2_000,
    "batch_messages": 10_000,
    "backlog": 20_000,
    "claims": 2_000,
    "rss_first": 2_000,
    "rss_total": 20_000,
    "longpoll_seconds": 20.0,
    "ceiling_seconds": 3.0,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke sizes: 2,000 messages, backlog 20,000, 1 run")
    add("--runs", type=int, help="repetitions (default 3, --quick 1)")
    add("--only", default=",".join(WORKLOADS), help=f"comma list of {','.join(WORKLOADS)} (all)")
    add("--databases", default=",".join(DATABASES), help="comma list (default: sqlite,postgres)")
    add(
        "--compare-servers",
        nargs="?",
        const=SERVERS,
        metavar="SERVER:WxT,...",
        help=f"instead: the seed cycle under each server config (default {SERVERS})",
    )
    add("--messages", type=int, help="one-at-a-time and SQS cycles (default 20,000)")
    add("--batch-messages", type=int, help="batched-100 cycles (default 100,000)")
    add("--backlog", type=int, help="stored messages for the backlog workload (default 1,000,000)")
    add("--claims", type=int, help="messages claimed at the head of each queue (default 10,000)")
    add("--rss-first", type=int, help="first RSS reading after this many messages (10,000)")
    add("--rss-total", type=int, help="last RSS reading after this many messages (1,000,000)")
    add("--longpolls", type=int, default=200, help="idle long-polls (default 200)")
    add(
        "--longpoll-seconds",
        type=float,
        help="their CPU window, rounded up to whole --longpoll-wait periods (default 40)",
    )
    add("--longpoll-wait", type=int, default=20, help="their ?wait= seconds (default 20)")
    add("--ceiling-seconds", type=float, help="duration of each HTTP ceiling (default 10)")
    add("--producers", type=int, default=4)
    add("--consumers", type=int, default=4)
    add("--clients", type=int, default=2, help="load generator processes (default 2)")
    add("--client", choices=["raw", "aiohttp"], default="raw", help="generator's HTTP client")
    add("--workers", type=int, help="server processes (default: MQ_WORKERS or the product's)")
    add("--threads", type=int, help="threads per process (default: MQ_THREADS or the product's)")
    add(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more environment for our server, e.g. MQ_SQLITE_SYNCHRONOUS=FULL (repeatable)",
    )
    add("--port", type=int, default=18400, help="first of the 4 ports used (default 18400)")
    add(
        "--pg-url",
        default="postgres://postgres@127.0.0.1:5432/mq_bench",
        help="the bench's own PostgreSQL database: it is DROPPED and created again",
    )
    add("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    add("--out", default=str(ROOT / "bench" / "results"), help="where JSON and Markdown go")
    args = parser.parse_args(argv)  # fmt: skip

    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # Whole periods of the long-polls' wait: each client's re-polls in their true proportion.
    periods = max(1, math.ceil(args.longpoll_seconds / args.longpoll_wait))
    args.longpoll_seconds = periods * args.longpoll_wait
    args.only = _choices(args.only, WORKLOADS, "--only")
    args.databases = _choices(args.databases, DATABASES, "--databases")
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    return args


def _choices(value: str, allowed: list[str], option: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    if unknown := set(chosen) - set(allowed):
        raise SystemExit(f"{option}: unknown {', '.join(sorted(unknown))}; choose from {allowed}")
    return chosen


# --- helpers ------------------------------------------------------------------


def product(args, workdir: Path, url: str, *, server="granian", workers=None, threads=None,
            port=None, name="mq") -> Server:  # fmt: skip
    """Our server on the database ``url`` (not started yet)."""
    workers, threads, port = workers or args.workers, threads or args.threads, port or args.port
    env = {"DATABASE_URL": url, "MQ_WORKERS": str(workers), "MQ_THREADS": str(threads)}
    env.update(args.server_env)
    if server != "granian":  # only the production command migrates by itself
        migrate(workdir, env)
    return Server(name, product_command(server, workers, threads, port), port, workdir, env)


def drive(args, targets, **cycle) -> dict:
    """``loadgen.cycle`` with the run's producers, consumers and generator."""
    shape = {"producers": args.producers, "consumers": args.consumers}
    return loadgen.cycle(targets, **{**shape, **cycle}, processes=args.clients, client=args.client)


def batch_missing(target) -> str | None:
    """Why the batch calls cannot be used, or None."""
    status, _, _ = http_get(target, "/messages/next?count=1")
    return "batch routes not there (GET /messages/next answered 404)" if status == 404 else None


def with_server_cpu(servers: list[Server], run) -> dict:
    """``run()``'s result plus the servers' CPU use (cores) over its measured seconds."""
    before = sum(s.cpu_seconds() for s in servers)
    result = run()
    used = sum(s.cpu_seconds() for s in servers) - before
    if result.get("seconds"):
        result["server_cpu_cores"] = used / result["seconds"]
    return result


def attempt(label: str, run) -> dict:
    """Run one workload; a failure is recorded and the bench goes on."""
    started = time.time()
    try:
        result = run()
    except Exception as error:  # a long run should not die on one workload
        traceback.print_exc()
        result = {"failed": f"{type(error).__name__}: {error}"}
    log(f"  {label}: {_brief(result)} ({time.time() - started:.0f} s)")
    return result


def _brief(result: dict) -> str:
    if "skipped" in result or "failed" in result:
        return result.get("skipped") or "FAILED " + result["failed"]
    keys = ("rate", "p50_ms", "p99_ms", "ratio", "server_cpu_percent", "duplicates", "lost")
    parts = [f"{k}={result[k]:,.4g}" for k in keys if result.get(k) is not None]
    if result.get("errors"):
        parts.append(f"errors={result['errors']}")
    return " ".join(parts) or json.dumps(result)[:200]


# --- workloads ------------------------------------------------------------------


def ceilings(args, workdir: Path) -> dict:
    """The generator against a canned response, then the bare Django app (same granian)."""

    def hammer(server: Server, path: str) -> dict:
        def run():
            result = loadgen.loop(
                [server.target], path, concurrency=args.producers + args.consumers,
                processes=args.clients, duration=args.ceiling_seconds, client=args.client,
            )  # fmt: skip
            return {**result, "seconds": args.ceiling_seconds}

        return with_server_cpu([server], run)

    out = {}
    port = args.port + 3
    with Server("canned", canned_command(port), port, workdir, {}) as canned:
        canned.start("/")
        out["generator"] = attempt("generator ceiling", lambda: hammer(canned, "/"))
    with bare_server(args, workdir) as bare:
        bare.start("/json")
        out["bare_json"] = attempt("bare Django view", lambda: hammer(bare, "/json"))
        out["bare_drf"] = attempt("bare DRF APIView", lambda: hammer(bare, "/drf"))
    return out


def bare_server(args, workdir: Path) -> Server:
    """The bare Django app (bench/bare_app.py) under granian, with the product's
    workers and threads."""
    port = args.port + 2
    return Server("bare", bare_command(args.workers, args.threads, port), port, workdir, {})


def inprocess_bare() -> dict:
    """CPU per request of the bare Django view and DRF APIView, called in process."""
    return {
        "bare_json": attempt("bare Django view in process", lambda: inprocess.measure("bare_json")),
        "bare_drf": attempt("bare DRF APIView in process", lambda: inprocess.measure("bare_drf")),
    }


def inprocess_product(url: str) -> dict:
    """CPU per request of send, next and done, our WSGI app called in process."""
    db.reset(url)
    return inprocess.measure("product", url)


def rabbit_baselines(args) -> dict:
    shape = {"producers": args.producers, "consumers": args.consumers}
    url = args.rabbit_url
    return {
        "one": attempt(
            "RabbitMQ one at a time",
            lambda: rabbit.cycle(url, messages=args.messages, batch=1, **shape),
        ),
        "batch": attempt(
            "RabbitMQ batched",
            lambda: rabbit.cycle(url, messages=args.batch_messages, batch=BATCH, **shape),
        ),
    }


def cycle(args, workdir, url, *, batch: int, servers: int = 1) -> dict:
    """The produce/consume cycle through ``servers`` instances of our server."""
    db.reset(url)
    running = [
        product(args, workdir, url, port=args.port + k, name=f"mq{k}") for k in range(servers)
    ]
    try:
        for server in running:
            server.start()
        targets = [server.target for server in running]
        if batch > 1 and (why := batch_missing(targets[0])):
            return {"skipped": why}
        messages = args.batch_messages if batch > 1 else args.messages
        return with_server_cpu(
            running, lambda: drive(args, targets, messages=messages, batch=batch)
        )
    finally:
        for server in running:
            server.stop()


def sqs_cycle(args, workdir, url, *, batch: int) -> dict:
    """The seed cycle's shape through our server's /sqs endpoint, with boto3 clients."""
    db.reset(url)
    with product(args, workdir, url) as server:
        server.start()
        host, port = server.target
        shape = {"producers": args.producers, "consumers": args.consumers}
        return with_server_cpu(
            [server],
            lambda: sqs.cycle(
                f"http://{host}:{port}/sqs", messages=args.messages, batch=batch, **shape
            ),
        )


def rawsql_baseline(args, url: str) -> dict:
    db.reset(url)
    return rawsql.cycle(
        url, messages=args.messages, producers=args.producers, consumers=args.consumers
    )


def backlog(args, workdir, url) -> dict:
    """Claim+ack ``claims`` messages at the head of a small queue, then of a big backlog;
    and /info's response time on each."""
    out = {}
    for label, size in (("short", args.claims), ("long", args.backlog)):
        db.reset(url)
        started = time.time()
        db.load_backlog(url, size)
        log(f"    loaded {size:,} messages in {time.time() - started:.1f} s")
        with product(args, workdir, url) as server:
            server.start()
            http_get(server.target, "/info")  # warm up
            info_ms = [http_get(server.target, "/info")[2] * 1000 for _ in range(5)]
            result = with_server_cpu(
                [server],
                lambda: drive(args, [server.target], messages=0, consume=args.claims, producers=0),
            )
        result["p50_ms"] = result["p99_ms"] = None  # sent at load time: not a latency
        out[label] = {"messages": size, "info_ms": statistics.median(info_ms), **result}
        log(
            f"    {size:,} stored: claim+ack {_brief(result)}, /info {out[label]['info_ms']:.0f} ms"
        )
    if out["long"].get("rate") and out["short"].get("rate"):
        out["ratio"] = out["long"]["rate"] / out["short"]["rate"]
    return out


def rss(args, workdir, url) -> dict:
    """Server memory after ``rss_first`` messages went through, then in 10 steps up
    to ``rss_total`` (batch calls when there, else the seed calls)."""
    db.reset(url)
    with product(args, workdir, url) as server:
        server.start()
        why_not_batch = batch_missing(server.target)
        batch = 1 if why_not_batch else BATCH
        span = args.rss_total - args.rss_first
        marks = [args.rss_first] + [args.rss_first + span * k // 10 for k in range(1, 11)]
        points, moved = [], 0
        for mark in marks:
            result = drive(args, [server.target], messages=mark - moved, batch=batch, record=False)
            moved = mark
            rss_mb = server.rss_bytes() / 2**20
            points.append({"messages": moved, "rss_mb": rss_mb, "rate": result["rate"],
                           "errors": result["errors"]})  # fmt: skip
    first, last = points[0]["rss_mb"], points[-1]["rss_mb"]
    via = f"seed calls ({why_not_batch})" if why_not_batch else "batch calls"
    return {"points": points, "first_mb": first, "last_mb": last, "ratio": last / first, "via": via}


def longpoll(args, workdir, url) -> dict:
    """Server CPU while ``longpolls`` requests wait on an empty queue (``idle_polls``)."""
    db.reset(url)
    with product(args, workdir, url) as server:
        server.start()
        status, _, probe = http_get(server.target, "/message/next?wait=2")
        if probe < 1.0:
            return {
                "skipped": "`wait` not supported (GET /message/next?wait=2 on an empty queue "
                f"answered {status} after {probe * 1000:.0f} ms)"
            }
        return idle_polls(args, server, f"/message/next?wait={args.longpoll_wait}")


def longpoll_floor(args, workdir: Path) -> dict:
    """The same polls against the bare Django view that sleeps ``wait`` (bench/bare_app.py,
    granian with the product's workers and threads): what any parked request costs here."""
    with bare_server(args, workdir) as bare:
        bare.start("/json")
        return idle_polls(args, bare, f"/wait?wait={args.longpoll_wait}")


def idle_polls(args, server: Server, path: str) -> dict:
    """Server CPU while ``longpolls`` requests GET ``path``, each sending its next
    as soon as one ends (after ``wait`` seconds, with 204).

    The window is a whole number of ``wait`` periods starting after the ramp
    (all first polls sent), so it holds every client's re-polls in their
    steady-state proportion: ``longpolls`` per period."""
    seconds = args.longpoll_seconds
    # The window's edges fall between re-polls: every first poll is sent
    # within the ramp, so each client's re-polls come ``ramp`` after an edge at most.
    ramp, window = min(3.0, args.longpoll_wait / 2), {}

    def measure(start_at: float) -> None:
        wait_until(start_at + ramp)
        cpu, started = server.cpu_seconds(), time.time()
        time.sleep(seconds)
        window["cpu_seconds"] = server.cpu_seconds() - cpu
        window["wall_seconds"] = time.time() - started
        window["connections"] = _connections_to(server.port)

    result = loadgen.loop(
        [server.target], path, concurrency=args.longpolls, processes=args.clients,
        duration=ramp + seconds, client=args.client, grace=1.0, during=measure,
    )  # fmt: skip
    # On an empty queue every poll ends with 204 at its deadline; anything else
    # (a 503, a closed connection) means the window did not measure idle waiting.
    failed = {status: n for status, n in result["statuses"].items() if status != "204"}
    if failed:
        empty = result["statuses"].get("204", 0)
        raise RuntimeError(f"polls not answered 204: {failed} ({empty} answered 204)")
    # Each client's polls answered in the run are the ones that ended inside the window.
    answered = sum(result["statuses"].values())
    return {
        "server_cpu_percent": window["cpu_seconds"] / window["wall_seconds"] * 100,
        "window_seconds": seconds,
        "server_cpu_seconds": window["cpu_seconds"],
        "server_cpu_ms_per_poll": window["cpu_seconds"] * 1000 / answered if answered else None,
        "open_connections": window["connections"],
        "answered": result["statuses"],
        "client_cpu_cores": result["client_cpu_cores"],
    }


def _connections_to(port: int) -> int:
    """Established TCP connections to ``port`` (the long-polls really are open)."""
    return sum(
        1
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def database_workloads(args, workdir: Path, kind: str) -> dict:
    """Every selected workload on a fresh database of ``kind``, dropped afterwards."""
    url = db.create(kind, workdir, args.pg_url)
    name = NAMES[kind]
    workloads = {
        "inprocess": lambda: inprocess_product(url),
        "seed": lambda: cycle(args, workdir, url, batch=1),
        "batch": lambda: cycle(args, workdir, url, batch=BATCH),
        "sqs": lambda: sqs_cycle(args, workdir, url, batch=1),
        "sqs_batch": lambda: sqs_cycle(args, workdir, url, batch=sqs.BATCH),
        "rawsql": lambda: rawsql_baseline(args, url),
        "scaleout": lambda: cycle(args, workdir, url, batch=1, servers=2),
        "backlog": lambda: backlog(args, workdir, url),
        "rss": lambda: rss(args, workdir, url),
        "longpoll": lambda: longpoll(args, workdir, url),  # last: it may leave threads waiting
    }
    try:
        migrate(workdir, {"DATABASE_URL": url})
        out = {"version": db.version(url)}
        for key, run in workloads.items():
            selected = {"sqs_batch": "sqs"}.get(key, key) in args.only  # --only sqs: both
            if selected and not (key == "scaleout" and kind != "postgres"):
                out[key] = attempt(f"{name} {key}", run)
        return out
    finally:
        db.drop(url)


def one_run(args, workdir: Path) -> dict:
    out = {}
    if "ceiling" in args.only:
        out["ceiling"] = ceilings(args, workdir)
    if "inprocess" in args.only:
        out["inprocess"] = inprocess_bare()
    if "longpoll" in args.only:
        out["longpoll_floor"] = attempt("bare long-polls", lambda: longpoll_floor(args, workdir))
    if "rabbit" in args.only:
        out["rabbit"] = rabbit_baselines(args)
    if set(args.only) - {"ceiling", "rabbit"}:
        for kind in args.databases:
            out[kind] = database_workloads(args, workdir, kind)
    return out


def compare_servers(args, workdir: Path) -> dict:
    """The seed cycle under each server config: ``{config: {database: [result per run]}}``."""
    configs = []
    for spec in args.compare_servers.split(","):
        server, shape = spec.strip().split(":")
        workers, threads = (int(x) for x in shape.split("x"))
        configs.append((f"{server}: {workers} x {threads}", server, workers, threads))
    results = {label: {kind: [] for kind in args.databases} for label, *_ in configs}
    for run in range(args.runs):
        log(f"[run {run + 1}/{args.runs}]")
        for kind in args.databases:
            url = db.create(kind, workdir, args.pg_url)
            try:
                migrate(workdir, {"DATABASE_URL": url})
                for label, server, workers, threads in configs:

                    def one(server=server, workers=workers, threads=threads, url=url):
                        db.reset(url)
                        config = {"server": server, "workers": workers, "threads": threads}
                        with product(args, workdir, url, **config) as running:
                            running.start()
                            return with_server_cpu(
                                [running],
                                lambda: drive(args, [running.target], messages=args.messages),
                            )

                    results[label][kind].append(attempt(f"{NAMES[kind]} {label}", one))
            finally:
                db.drop(url)
    return results


# --- main ---------------------------------------------------------------------------


def machine_info(args) -> dict:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = []
    for package in (
        "django",
        "djangorestframework",
        "granian",
        "gunicorn",
        "psycopg",
        "pika",
        "boto3",
    ):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        versions.append(rabbit.version(args.rabbit_url))
    except Exception as error:  # the RabbitMQ workload will report it in full
        versions.append(f"RabbitMQ unreachable ({type(error).__name__})")
    return {
        "when": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "python": f"Python {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
        "load_average": os.getloadavg()[0],
    }


def _stop_on_sigterm(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: servers and databases cleaned up


def main(argv=None) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(args)
    if machine["load_average"] > 0.5:
        log(f"note: load average {machine['load_average']:.2f} at start: other processes "
            "share the 2 cores, numbers will be low and noisy")  # fmt: skip
    started = time.time()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="mq_bench_") as tmp:
        workers, threads = product_shape(Path(tmp))  # env MQ_WORKERS/MQ_THREADS, or defaults
        args.workers, args.threads = args.workers or workers, args.threads or threads
        if args.compare_servers:
            results = compare_servers(args, Path(tmp))
            markdown, name = servers_report(args, results), f"servers-{stamp}"
        else:
            results = []
            for run in range(args.runs):
                log(f"[run {run + 1}/{args.runs}]")
                results.append(one_run(args, Path(tmp)))
            for kind in args.databases:
                versions = [r[kind]["version"] for r in results if "version" in r.get(kind, {})]
                machine["versions"] += versions[:1]
            markdown, name = bench_report(args, results, machine), f"bench-{stamp}"
    command = " ".join(["python bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    markdown += f"\n`{command}` took {(time.time() - started) / 60:.1f} min.\n"
    document = {"config": vars(args), "machine": machine, "results": results}
    (out_dir / f"{name}.json").write_text(json.dumps(document, indent=1, default=str))
    (out_dir / f"{name}.md").write_text(markdown)
    print(markdown)  # noqa: T201
    log(f"wrote {out_dir / name}.json and .md")


if __name__ == "__main__":
    main()
