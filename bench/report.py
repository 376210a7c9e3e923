"""The Markdown tables: medians (min–max) over the runs, and the issue's ratios.

Every value is read from the runs' JSON by a small function; a value a run
lacks (workload not selected, skipped or failed) is left out, and a cell with
no value at all shows "—" with the reason as a numbered note.
"""

from common import stats

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


class Table:
    """Collects the notes (skips, failures) of the cells of one report."""

    def __init__(self, runs: list[dict]):
        self.runs, self.notes = runs, []

    def values(self, fn, runs=None) -> list:
        values = []
        for run in self.runs if runs is None else runs:
            try:
                values.append(fn(run))
            except (KeyError, TypeError, ZeroDivisionError):
                values.append(None)
        return values

    def median(self, fn, runs=None):
        summary = stats(self.values(fn, runs))
        return summary and summary["median"]

    def cell(self, fn, fmt: str, note=None, runs=None) -> str:
        """Median (min–max) of ``fn`` over the runs; ``note(run)`` explains a gap."""
        runs = self.runs if runs is None else runs
        values = self.values(fn, runs)
        sizes = {len(v) for v in values if isinstance(v, tuple)}
        if sizes:  # "a / b": each summarized apart
            parts = range(max(sizes))
            return " / ".join(self.cell(lambda r, k=k: fn(r)[k], fmt, note, runs) for k in parts)
        summary = stats(values)
        if summary is None:
            return self._gap(note, runs)
        text = format(summary["median"], fmt)
        if len(runs) > 1:
            text += f" ({format(summary['min'], fmt)}–{format(summary['max'], fmt)})"
        return text

    def _gap(self, note, runs) -> str:
        for run in runs:
            result = _try(note, run) if note else None
            if isinstance(result, dict) and ("skipped" in result or "failed" in result):
                text = result.get("skipped") or "failed: " + result["failed"]
                if text not in self.notes:
                    self.notes.append(text)
                return f"— [{self.notes.index(text) + 1}]"
        return "—"


def _try(fn, run):
    try:
        return fn(run)
    except (KeyError, TypeError):
        return None


def _errors(result: dict) -> int:
    """Calls that failed: non-2xx answers, timeouts, closed connections."""
    return sum(result["errors"].values())


def our_rows(args) -> list:
    """(label, workload key, value of one database in one run, format)."""

    def hot(part=None):
        def value(d):
            result = d["inprocess"] if part is None else d["inprocess"][part]
            return tuple(result[k] for k in ("send", "next", "done", "mean"))

        return value

    return [
        ("in process, CPU per request: send / next / done / mean, µs", "inprocess",
         hot(), ",.0f"),
        ("in process, PostgreSQL backends' CPU per request: send / next / done / mean, µs",
         "inprocess", hot("database"), ",.0f"),
        (f"seed cycle, msg/s ({args.producers}P+{args.consumers}C, {args.messages:,} msgs)",
         "seed", lambda d: d["seed"]["rate"], ",.0f"),
        ("seed cycle latency p50 / p99, ms", "seed",
         lambda d: (d["seed"]["p50_ms"], d["seed"]["p99_ms"]), ",.1f"),
        ("seed cycle duplicates / lost / failed calls", "seed",
         lambda d: (d["seed"]["duplicates"], d["seed"]["lost"], _errors(d["seed"])), ",.0f"),
        ("seed cycle CPU, server / generator, cores", "seed",
         lambda d: (d["seed"]["server_cpu_cores"], d["seed"]["client_cpu_cores"]), ".2f"),
        (f"batch-100 cycle, msg/s ({args.batch_messages:,} msgs)", "batch",
         lambda d: d["batch"]["rate"], ",.0f"),
        ("batch-100 latency p50 / p99, ms", "batch",
         lambda d: (d["batch"]["p50_ms"], d["batch"]["p99_ms"]), ",.1f"),
        ("batch-100 duplicates / lost / failed calls", "batch",
         lambda d: (d["batch"]["duplicates"], d["batch"]["lost"], _errors(d["batch"])), ",.0f"),
        (f"SQS one at a time (boto3), msg/s ({args.messages:,} msgs)", "sqs",
         lambda d: d["sqs"]["rate"], ",.0f"),
        ("SQS one at a time latency p50 / p99, ms", "sqs",
         lambda d: (d["sqs"]["p50_ms"], d["sqs"]["p99_ms"]), ",.1f"),
        ("SQS one at a time duplicates / lost / failed calls", "sqs",
         lambda d: (d["sqs"]["duplicates"], d["sqs"]["lost"], _errors(d["sqs"])), ",.0f"),
        ("SQS one at a time CPU, server / generator, cores", "sqs",
         lambda d: (d["sqs"]["server_cpu_cores"], d["sqs"]["client_cpu_cores"]), ".2f"),
        (f"SQS batch-10 (boto3), msg/s ({args.messages:,} msgs)", "sqs_batch",
         lambda d: d["sqs_batch"]["rate"], ",.0f"),
        ("SQS batch-10 duplicates / lost / failed calls", "sqs_batch",
         lambda d: (d["sqs_batch"]["duplicates"], d["sqs_batch"]["lost"],
                    _errors(d["sqs_batch"])), ",.0f"),
        ("raw SQL loop, msg/s (same P+C, no HTTP)", "rawsql",
         lambda d: d["rawsql"]["rate"], ",.0f"),
        ("two servers, seed cycle, msg/s", "scaleout", lambda d: d["scaleout"]["rate"], ",.0f"),
        (f"claim+ack, queue of {args.claims:,}, msg/s", "backlog",
         lambda d: d["backlog"]["short"]["rate"], ",.0f"),
        (f"claim+ack at {args.backlog:,} backlog, msg/s", "backlog",
         lambda d: d["backlog"]["long"]["rate"], ",.0f"),
        (f"/info at {args.backlog:,} backlog, ms", "backlog",
         lambda d: d["backlog"]["long"]["info_ms"], ",.1f"),
        (f"{args.longpolls} idle long-polls (wait={args.longpoll_wait}), server CPU % of one core "
         f"over {_longpoll_window(args)}", "longpoll",
         lambda d: d["longpoll"]["server_cpu_percent"], ",.1f"),
        ("idle long-polls, server CPU ms per poll answered (waiting included)", "longpoll",
         lambda d: d["longpoll"]["server_cpu_ms_per_poll"], ",.2f"),
        (f"server RSS after {args.rss_first:,} / {args.rss_total:,} msgs, MiB", "rss",
         lambda d: (d["rss"]["first_mb"], d["rss"]["last_mb"]), ",.0f"),
    ]  # fmt: skip


def _longpoll_window(args) -> str:
    """The long-poll workload's CPU window: whole ``wait`` periods (``run.parse_args``)."""
    periods = round(args.longpoll_seconds / args.longpoll_wait)
    return f"{args.longpoll_seconds:.0f} s ({periods} × wait: every client's re-polls in it)"


def baseline_rows(args) -> list:
    """(label, value of one run, format, where a skip or failure note is)."""

    def ceiling(key):
        return lambda r: r["ceiling"][key]

    def rabbit(key):
        return lambda r: r["rabbit"][key]

    def bare(key):
        return lambda r: r["inprocess"][key]

    def floor(r):
        return r["longpoll_floor"]

    c = args.producers + args.consumers
    return [
        (f"generator ceiling (canned response, {c} connections), req/s",
         lambda r: r["ceiling"]["generator"]["rate"], ",.0f", ceiling("generator")),
        ("generator CPU per request, µs",
         lambda r: 1e6 * r["ceiling"]["generator"]["client_cpu_cores"]
         / r["ceiling"]["generator"]["rate"], ",.0f", ceiling("generator")),
        ("bare Django JSON view (granian, same workers/threads), req/s",
         lambda r: r["ceiling"]["bare_json"]["rate"], ",.0f", ceiling("bare_json")),
        ("bare DRF APIView (granian, same workers/threads), req/s",
         lambda r: r["ceiling"]["bare_drf"]["rate"], ",.0f", ceiling("bare_drf")),
        ("bare Django JSON view in process (no middleware), CPU per request, µs",
         lambda r: r["inprocess"]["bare_json"]["get"], ",.0f", bare("bare_json")),
        ("bare DRF APIView in process, CPU per request, µs",
         lambda r: r["inprocess"]["bare_drf"]["get"], ",.0f", bare("bare_drf")),
        (f"{args.longpolls} long-polls on a bare Django view that sleeps `wait` (granian, same "
         "workers/threads), server CPU % of one core / ms per poll",
         lambda r: (floor(r)["server_cpu_percent"], floor(r)["server_cpu_ms_per_poll"]), ",.2f",
         floor),
        (f"RabbitMQ one at a time, msg/s ({args.messages:,} msgs)",
         lambda r: r["rabbit"]["one"]["rate"], ",.0f", rabbit("one")),
        ("RabbitMQ one at a time latency p50 / p99, ms",
         lambda r: (r["rabbit"]["one"]["p50_ms"], r["rabbit"]["one"]["p99_ms"]), ",.1f",
         rabbit("one")),
        (f"RabbitMQ batched-100, msg/s ({args.batch_messages:,} msgs)",
         lambda r: r["rabbit"]["batch"]["rate"], ",.0f", rabbit("batch")),
    ]  # fmt: skip


def target_rows() -> list:
    """(target, value of one database in one run, goal, test per database or None)."""

    def seed_over_rabbit(r, k):
        return r[k]["seed"]["rate"] / r["rabbit"]["one"]["rate"]

    def seed_over_sql(r, k):
        return r[k]["seed"]["rate"] / r[k]["rawsql"]["rate"]

    def batch_over_rabbit(r, k):
        return r[k]["batch"]["rate"] / r["rabbit"]["batch"]["rate"]

    def generator_headroom(r, k):
        seed = r[k]["seed"]
        return r["ceiling"]["generator"]["rate"] / (seed["requests"] / seed["seconds"])

    return [
        ("in process, CPU per hot request (mean of send/next/done), µs",
         lambda r, k: r[k]["inprocess"]["mean"], "SQLite ≤ 150, PostgreSQL ≤ 300",
         {"sqlite": lambda v: v <= 150, "postgres": lambda v: v <= 300}),
        ("seed cycle / RabbitMQ one at a time", seed_over_rabbit,
         "SQLite ≥ 0.5 (aim 1.0), PostgreSQL ≥ 0.35",
         {"sqlite": lambda v: v >= 0.5, "postgres": lambda v: v >= 0.35}),
        ("seed cycle / raw SQL loop", seed_over_sql, "PostgreSQL ≥ 0.5",
         {"postgres": lambda v: v >= 0.5}),
        ("batch-100 / RabbitMQ batched", batch_over_rabbit, "SQLite ≥ 4, PostgreSQL ≥ 1.5",
         {"sqlite": lambda v: v >= 4, "postgres": lambda v: v >= 1.5}),
        ("SQS one at a time (boto3) / seed cycle",
         lambda r, k: r[k]["sqs"]["rate"] / r[k]["seed"]["rate"], "reported", {}),
        ("SQS batch-10 (boto3) / seed cycle",
         lambda r, k: r[k]["sqs_batch"]["rate"] / r[k]["seed"]["rate"], "reported", {}),
        ("claim rate at backlog / small queue", lambda r, k: r[k]["backlog"]["ratio"], "≥ 0.9",
         {"sqlite": lambda v: v >= 0.9, "postgres": lambda v: v >= 0.9}),
        ("/info at backlog, ms", lambda r, k: r[k]["backlog"]["long"]["info_ms"], "< 200",
         {"sqlite": lambda v: v < 200, "postgres": lambda v: v < 200}),
        ("idle long-polls, server CPU % of one core",
         lambda r, k: r[k]["longpoll"]["server_cpu_percent"], "< 5",
         {"sqlite": lambda v: v < 5, "postgres": lambda v: v < 5}),
        ("RSS last / first reading", lambda r, k: r[k]["rss"]["ratio"], "≤ 1.2",
         {"sqlite": lambda v: v <= 1.2, "postgres": lambda v: v <= 1.2}),
        ("two servers / one server (seed cycle)",
         lambda r, k: r[k]["scaleout"]["rate"] / r[k]["seed"]["rate"], "reported", {}),
        ("generator ceiling / seed cycle req/s", generator_headroom,
         "> 1.5: the generator is not the limit",
         {"sqlite": lambda v: v > 1.5, "postgres": lambda v: v > 1.5}),
    ]  # fmt: skip


def bench_report(args, runs: list[dict], machine: dict) -> str:
    table = Table(runs)
    kinds = args.databases
    spread = f"Median (min–max) of {len(runs)} runs." if len(runs) > 1 else "One run, no spread."
    lines = [
        f"## message-queue bench, {machine['when']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.0f} GiB, "
        f"{machine['python']}; {', '.join(machine['versions'])}.",
        f"Our server: the `message-queue` command (granian WSGI), {args.workers} workers × "
        f"{args.threads} threads. Generator: {args.clients} processes, `{args.client}` client. "
        + spread
        + f" Load average at start: {machine['load_average']:.2f}.",
        "",
        "### Our server",
        "",
        "| workload | " + " | ".join(NAMES[k] for k in kinds) + " |",
        "| --- |" + " ---: |" * len(kinds),
    ]
    for label, key, fn, fmt in our_rows(args):
        cells = []
        for kind in kinds:
            per_db = [run.get(kind, {}) for run in runs]

            def note(d, key=key):
                return d[key]

            cells.append(table.cell(fn, fmt, note, per_db))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "### Baselines, same run", "", "| baseline | value |", "| --- | ---: |"]
    for label, fn, fmt, note in baseline_rows(args):
        lines.append(f"| {label} | {table.cell(fn, fmt, note)} |")

    lines += [
        "",
        "### Targets (each ratio computed within one run)",
        "",
        "| target | " + " | ".join(NAMES[k] for k in kinds) + " | goal | met |",
        "| --- |" + " ---: |" * len(kinds) + " --- | :---: |",
    ]
    for label, fn, goal, tests in target_rows():
        cells, verdicts = [], []
        for kind in kinds:

            def value(run, kind=kind, fn=fn):
                return fn(run, kind)

            cells.append(table.cell(value, ",.2f"))
            median = table.median(value)
            if kind in tests and median is not None:
                verdicts.append(tests[kind](median))
        met = "—" if not verdicts else ("yes" if all(verdicts) else "**no**")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} | {met} |")

    if table.notes:
        lines += ["", *(f"[{k}] {note}" for k, note in enumerate(table.notes, 1))]
    return "\n".join(lines) + "\n"


def servers_report(args, results: dict) -> str:
    """The server comparison: ``results[config][database]`` is a list of seed cycles."""
    table = Table([])
    kinds = args.databases
    spread = f"median (min–max) of {args.runs} runs" if args.runs > 1 else "one run"
    lines = [
        f"### Server comparison: seed cycle, {args.producers}P+{args.consumers}C, "
        f"{args.messages:,} messages, {spread}",
        "",
        "| server: workers x threads | "
        + " | ".join(f"{NAMES[k]} msg/s | p99 ms | server CPU | errors" for k in kinds)
        + " |",
        "| --- |" + " ---: | ---: | ---: | ---: |" * len(kinds),
    ]
    for config, per_db in results.items():
        cells = []
        for kind in kinds:
            runs = per_db[kind]
            errors = sum(sum(r.get("errors", {}).values()) for r in runs)
            cells += [
                table.cell(lambda r: r["rate"], ",.0f", lambda r: r, runs),
                table.cell(lambda r: r["p99_ms"], ",.1f", runs=runs),
                table.cell(lambda r: r["server_cpu_cores"], ".2f", runs=runs),
                f"{errors:,}",
            ]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    if table.notes:
        lines += ["", *(f"[{k}] {note}" for k, note in enumerate(table.notes, 1))]
    return "\n".join(lines) + "\n"
