"""Fuzz a live ``message-queue`` server with schemathesis against its own OpenAPI
schema (/api/schema/), on one database:

    python .ci/fuzz.py sqlite|postgresql|mariadb NAME [MAX_EXAMPLES (5)]

NAME names the throwaway database (``NAME_fuzz``, dropped and created again).
Checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance. Prints one line of numbers (requests, 5xx, refused
requests, stray writes: see fuzz_hooks.py) and exits non-zero on any failure,
5xx or stray write.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from ports import free_port  # noqa: E402 (tests/ on the path)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def run_sql(vendor: str, statement: str) -> None:
    """Run a statement on the PostgreSQL or MariaDB server, as its superuser."""
    if vendor == "postgresql":
        command = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", statement]
    else:
        command = ["mariadb", "--protocol=tcp", "-h", "127.0.0.1", "-u", "root", "-e", statement]
    subprocess.run(command, check=True)


def fresh_database(vendor: str, name: str, folder: str) -> str:
    """A DATABASE_URL of an empty database."""
    if vendor == "sqlite":
        return f"sqlite:///{folder}/fuzz.sqlite3"
    run_sql(vendor, f"DROP DATABASE IF EXISTS {name}")
    run_sql(vendor, f"CREATE DATABASE {name}")
    if vendor == "postgresql":
        return f"postgres://postgres@127.0.0.1:5432/{name}"
    return f"mysql://root@127.0.0.1:3306/{name}"


def start_server(vendor: str, env: dict, folder: str) -> tuple[subprocess.Popen, str]:
    """The server, its output (a warning per refused request) in ``folder``/server.log."""
    port = free_port({"mariadb": "mysql"}.get(vendor, vendor))
    with open(f"{folder}/server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mq_project.cli"],
            cwd=folder,
            env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"fuzz: the server exited with {server.returncode}")
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    sys.exit("fuzz: the server did not answer /health within 60 s")


def main() -> int:
    vendor, name = sys.argv[1], f"{sys.argv[2]}_fuzz"
    max_examples = sys.argv[3] if len(sys.argv) > 3 else "5"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "DATABASE_URL": fresh_database(vendor, name, folder),
            "DJANGO_SETTINGS_MODULE": "mq_project.settings",
            "SCHEMATHESIS_HOOKS": str(HERE / "fuzz_hooks.py"),
            "FUZZ_STATS": f"{folder}/stats.json",
        }
        server, url = start_server(vendor, env, folder)
        started = time.monotonic()
        try:
            fuzz = subprocess.run(
                [Path(sys.executable).parent / "schemathesis", "run", url + "/api/schema/",
                 "--checks", CHECKS, "--max-examples", max_examples, "--workers", "1",
                 "--request-timeout", "30", "--no-color"],
                cwd=folder,
                env=env,
            )  # fmt: skip
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            if vendor != "sqlite":
                run_sql(vendor, f"DROP DATABASE {name}")
        stats = json.loads(Path(env["FUZZ_STATS"]).read_text())
        if stats["server_errors"]:
            log = Path(f"{folder}/server.log").read_text().splitlines()
            print("the server's log, last 100 lines:", *log[-100:], sep="\n")  # noqa: T201
    print(  # noqa: T201
        f"fuzz {vendor}: {stats['requests']} requests in {time.monotonic() - started:.0f} s, "
        f"{stats['server_errors']} answered 5xx, {stats['refused']} refused (4xx), "
        f"{stats['stray_writes']} stray writes {stats['examples'][:5]}, "
        f"schemathesis exit {fuzz.returncode}"
    )
    return int(bool(fuzz.returncode or stats["server_errors"] or stats["stray_writes"]))


if __name__ == "__main__":
    sys.exit(main())
