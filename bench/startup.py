"""How long ``message-queue`` takes to serve after a start, and what it costs.

Starts the production command on a fresh SQLite file, waits until /health
answers, then sends ``--requests`` GET /message/next at once, each on its own
connection, so that every worker answers some (the first request of a worker
that loaded the views lazily waited for the import). Reports, as medians of
``--runs`` starts: seconds to the first /health 200, the slowest and the
median of those first requests, the CPU seconds of the whole process tree by
then, and its memory summed two ways: RSS (which counts pages the workers share
with the main process once in each) and PSS (which shares them out)::

    python bench/startup.py --runs 5

It prints one JSON object.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import Server, http_get, product_command  # noqa: E402 (bench/ on the path)


def one_start(port: int, requests: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {"DATABASE_URL": f"sqlite:///{folder}/startup.sqlite3"}
        server = Server("startup", product_command("granian", 0, 0, port), port, Path(folder), env)
        started = time.perf_counter()
        with server.start():
            ready = time.perf_counter() - started
            with ThreadPoolExecutor(requests) as pool:
                calls = [
                    pool.submit(http_get, server.target, "/message/next") for _ in range(requests)
                ]
                answers = sorted(call.result()[2] for call in calls)
            return {
                "ready_s": ready,
                "first_requests_max_ms": answers[-1] * 1000,
                "first_requests_median_ms": statistics.median(answers) * 1000,
                "cpu_s": server.cpu_seconds(),
                "rss_sum_mib": server.rss_bytes() / 2**20,
                "pss_sum_mib": server.pss_bytes() / 2**20,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--port", type=int, default=18490)
    args = parser.parse_args()
    runs = [one_start(args.port, args.requests) for _ in range(args.runs)]
    medians = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
    print(json.dumps({"runs": args.runs, **medians}))  # noqa: T201


if __name__ == "__main__":
    main()
