"""Start and stop the servers under test, and read their CPU time and memory.

Each server runs in its own process group (``start_new_session``), so stopping
it is one SIGTERM to the group, then SIGKILL to whatever is left after a grace
period. Its output goes to a log file in the run's temp dir.
"""

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HOST = "127.0.0.1"


def http_get(target: tuple[str, int], path: str, timeout: float = 60) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one GET on a new connection."""
    conn = http.client.HTTPConnection(*target, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started
    finally:
        conn.close()


def product_command(server: str, workers: int, threads: int, port: int) -> list[str]:
    """The command line serving the product with ``server`` ("granian" or "gunicorn")."""
    if server == "granian":  # the production command; it reads MQ_WORKERS/MQ_THREADS/PORT
        return [sys.executable, "-m", "mq_project.cli"]
    if server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
            "--workers", str(workers), "--threads", str(threads),
            "--bind", f"{HOST}:{port}", "--log-level", "warning",
            "mq_project.wsgi:application",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


def bare_command(workers: int, threads: int, port: int) -> list[str]:
    """The bare Django app under granian WSGI, as the product's CLI configures it."""
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi",
        "--workers", str(workers), "--blocking-threads", str(threads),
        "--host", HOST, "--port", str(port), "--log-level", "warning",
        "bare_app:application",
    ]  # fmt: skip


def canned_command(port: int) -> list[str]:
    return [sys.executable, str(BENCH / "canned.py"), str(port)]


class Server:
    """A server process group: ``start()`` waits until ``health_path`` answers 200."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, env: dict):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.env = {
            **os.environ,
            # Importable without an install; bare_app lives in bench/.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT), str(BENCH), os.environ.get("PYTHONPATH")])
            ),
            "SECRET_KEY": "bench-only-secret-key",
            "HOST": HOST,
            "PORT": str(port),
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"{name}.log"

    @property
    def target(self) -> tuple[str, int]:
        return HOST, self.port

    def start(self, health_path: str = "/health", timeout: float = 90.0) -> "Server":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.time() + timeout
        url = f"http://{HOST}:{self.port}{health_path}"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {url} in {timeout:.0f} s:\n{self.tail()}")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        # Workers that outlived their parent still belong to the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process tree so far."""

        def cpu(proc: psutil.Process) -> float:
            times = proc.cpu_times()
            return times.user + times.system

        return self._summed(cpu)

    def rss_bytes(self) -> int:
        """Resident memory of the whole process tree (main process + workers); a
        page the workers share with the main process counts in each."""
        return self._summed(lambda proc: proc.memory_info().rss)

    def pss_bytes(self) -> int:
        """Proportional memory of the whole process tree: each shared page
        divided among the processes sharing it, so the sum counts it once."""
        return self._summed(lambda proc: proc.memory_full_info().pss)

    def _summed(self, of):
        """``of(process)`` added up over the tree, leaving out processes gone meanwhile."""
        total = 0
        for proc in self.processes():
            try:
                total += of(proc)
            except psutil.NoSuchProcess:
                pass
        return total


def product_shape(workdir: Path) -> tuple[int, int]:
    """The product's own (workers, threads) defaults, as its settings read them."""
    code = "import mq_project.settings as s; print(s.MQ_WORKERS, s.MQ_THREADS)"
    env = Server("settings", [], 0, workdir, {}).env
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    workers, threads = output.split()
    return int(workers), int(threads)


def migrate(workdir: Path, env: dict) -> None:
    """Apply the product's migrations (for servers other than the production command)."""
    full_env = Server("migrate", [], 0, workdir, env).env
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=workdir,
        env={**full_env, "DJANGO_SETTINGS_MODULE": "mq_project.settings"},
        check=True,
    )
