"""The HTTP load generator: asyncio coroutines on keep-alive connections,
spread over a few OS processes.

Two clients speak HTTP/1.1 with keep-alive:

- ``raw`` (default): a minimal client on an asyncio Protocol, one connection
  per coroutine. It costs about a fifth of aiohttp's CPU per request, which
  matters on 2 cores shared with the server and the database.
- ``aiohttp``: aiohttp's ClientSession, to cross-check the raw client.

Workloads, each run by ``fan_out`` in ``processes`` processes:

- ``cycle``: producers send messages (one per call, or ``batch`` per call),
  consumers lease and ack them until all are acked;
- ``hammer``: GET one path in a loop for a while (the HTTP ceilings);
- ``longpoll``: idle long-polls on an empty queue.
"""

import asyncio
import json
import re
import time

import aiohttp
from common import fan_out, make_payload, read_payload, split, summarize, wait_until

# A consumer that finds the queue empty waits this long before asking again.
POLL_PAUSE = 0.002
# A message call without an answer after this long counts as an error.
REQUEST_TIMEOUT = 30.0

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")


def parse_response(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first complete response in ``buf``, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    if b"\r\ntransfer-encoding: chunked" in head:
        body, pos = bytearray(), start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                return None
            if size == 0:
                return status, bytes(body), line_end + 4
            body += buf[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
    match = _CONTENT_LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    if len(buf) < start + length:
        return None
    return status, bytes(buf[start : start + length]), start + length


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def data_received(self, data):
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        parsed = parse_response(self.buffer)
        if parsed:
            status, body, used = parsed
            del self.buffer[:used]
            self.waiter.set_result((status, body))


class RawClient:
    """One keep-alive HTTP/1.1 connection, opened on first use and after a close.

    A request without an answer after ``timeout`` seconds raises ConnectionError
    (and drops the connection), so a stuck server cannot hang the bench.
    """

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: _Connection | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        if self.conn is None or self.conn.transport is None:
            _, self.conn = await loop.create_connection(_Connection, self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        conn = self.conn
        conn.buffer.clear()
        conn.waiter = loop.create_future()
        conn.transport.write(head.encode() + b"\r\n" + body)
        timer = loop.call_later(self.timeout, self._expire, conn)
        try:
            return await conn.waiter
        finally:
            timer.cancel()

    def _expire(self, conn: _Connection) -> None:
        if not conn.waiter.done():
            conn.waiter.set_exception(ConnectionError(f"no answer in {self.timeout:.0f} s"))
            if conn.transport:
                conn.transport.abort()

    def close(self) -> None:
        if self.conn and self.conn.transport:
            self.conn.transport.close()


class AiohttpClient:
    """The same interface on a shared aiohttp session (its own keep-alive pool)."""

    def __init__(self, session, host: str, port: int, timeout: float):
        self.session, self.base = session, f"http://{host}:{port}"
        self.timeout = timeout

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body else None
        try:
            async with self.session.request(
                method, self.base + path, data=body or None, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as r:  # fmt: skip
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ConnectionError(str(error)) from error

    def close(self) -> None:
        pass


class _Clients:
    """The clients of one worker process, round-robin over the servers."""

    def __init__(self, kind: str, targets: list[tuple[str, int]], timeout: float):
        self.kind, self.targets, self.timeout = kind, targets, timeout
        self.made, self.session = [], None

    async def __aenter__(self):
        if self.kind == "aiohttp":
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    def new(self):
        host, port = self.targets[len(self.made) % len(self.targets)]
        if self.session:
            client = AiohttpClient(self.session, host, port, self.timeout)
        else:
            client = RawClient(host, port, self.timeout)
        self.made.append(client)
        return client

    async def __aexit__(self, *exc):
        for client in self.made:
            client.close()
        if self.session:
            await self.session.close()


# --- the message cycle ------------------------------------------------------


async def _produce(client, chunks: list[range], batch: int, progress, report: dict) -> None:
    for chunk in chunks:
        sent = time.time()
        report["first_send"] = min(report.get("first_send") or sent, sent)
        if batch == 1:
            path, body = "/message/new", '{"payload":' + make_payload(chunk[0], sent) + "}"
        else:
            payloads = ",".join(make_payload(i, sent) for i in chunk)
            path, body = "/messages/new", '{"payloads":[' + payloads + "]}"
        try:
            status, _ = await client.request("POST", path, body.encode())
        except ConnectionError:
            status = "closed"
        report["requests"] += 1
        if status != 201:
            _count(report, f"send {status}")
            progress.refuse(len(chunk))


async def _consume(client, spec: dict, progress, report: dict) -> None:
    batch, record = spec["batch"], spec["record"]
    while not progress.done(spec["target"]):
        path = "/message/next" if batch == 1 else f"/messages/next?count={batch}"
        try:
            status, body = await client.request("GET", path)
        except ConnectionError:
            status, body = "closed", b""
        report["requests"] += 1
        if status == 200:
            messages = [json.loads(body)] if batch == 1 else json.loads(body)["messages"]
        else:
            messages = []
            if status != 204:
                _count(report, f"next {status}")
        if not messages:
            report["empty"] += 1
            if progress.stalled(spec["stall"]):
                return
            await asyncio.sleep(POLL_PAUSE)
            continue
        if record:
            now = time.time()
            for message in messages:
                index, sent = read_payload(message["payload"])
                report["received"].append(index)
                report["latency"].append(now - sent)
        try:
            done = await _ack(client, messages, batch, report)
        except ConnectionError:
            _count(report, "done closed")
            done = 0
        if done:
            progress.ack(done)
            report["acked"] += done
            report["last_ack"] = time.time()


async def _ack(client, messages: list[dict], batch: int, report: dict) -> int:
    """Ack the deliveries with their leases; return how many were accepted."""
    report["requests"] += 1
    if batch == 1:
        m = messages[0]
        body = f'{{"lease":"{m["lease"]}"}}'.encode()
        status, _ = await client.request("POST", f"/message/{m['id']}/status/done", body)
        if status != 200:
            _count(report, f"done {status}")
        return int(status == 200)
    body = json.dumps({"messages": [{"id": m["id"], "lease": m["lease"]} for m in messages]})
    status, answer = await client.request("POST", "/messages/status/done", body.encode())
    if status != 200:
        _count(report, f"done {status}")
        return 0
    answer = json.loads(answer)
    if answer["failed"]:
        _count(report, "done failed", len(answer["failed"]))
    return len(answer["processed"])


def _count(report: dict, error: str, n: int = 1) -> None:
    report["errors"][error] = report["errors"].get(error, 0) + n


async def _cycle_main(spec: dict, progress, start_at: float) -> dict:
    report = {
        "acked": 0,
        "requests": 0,
        "empty": 0,
        "errors": {},
        "received": [],
        "latency": [],
        "first_send": None,
        "last_ack": None,
    }
    async with _Clients(spec["client"], spec["targets"], REQUEST_TIMEOUT) as clients:
        tasks = [
            _produce(clients.new(), chunks, spec["batch"], progress, report)
            for chunks in spec["sends"]
        ]
        tasks += [_consume(clients.new(), spec, progress, report) for _ in range(spec["consumers"])]
        wait_until(start_at)
        cpu = time.process_time()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), spec["deadline"] - time.time())
        except TimeoutError:
            report["errors"]["timed out"] = 1
        report["cpu"] = time.process_time() - cpu
    return report


def _cycle_worker(spec: dict, progress, start_at: float) -> dict:
    return asyncio.run(_cycle_main(spec, progress, start_at))


def cycle(
    targets: list[tuple[str, int]],
    *,
    messages: int,
    producers: int,
    consumers: int,
    processes: int,
    batch: int = 1,
    consume: int | None = None,
    client: str = "raw",
    record: bool = True,
    stall: float = 15.0,
    timeout: float | None = None,
) -> dict:
    """Send ``messages`` and consume ``consume`` (default: as many), ``batch`` per call.

    With ``messages=0`` the consumers drain ``consume`` messages already stored
    (the backlog workload). Producer ``j`` sends the chunks ``j, j+P, ...`` of
    ``batch`` consecutive indices, so every index is sent exactly once.
    """
    consume = messages if consume is None else consume
    if timeout is None:  # generous: at least 100 messages/s
        timeout = 120 + max(messages, consume) / 100
    chunks = [range(k, min(k + batch, messages)) for k in range(0, messages, batch)]
    sends = [chunks[j::producers] for j in range(producers)] if messages else []
    specs = []
    for k, (n_producers, n_consumers) in enumerate(
        zip(split(len(sends), processes), split(consumers, processes), strict=True)
    ):
        first = sum(split(len(sends), processes)[:k])
        specs.append(
            {
                "client": client,
                "targets": targets,
                "sends": sends[first : first + n_producers],
                "consumers": n_consumers,
                "batch": batch,
                "target": consume,
                "record": record,
                "stall": stall,
                "deadline": time.time() + timeout,
            }
        )
    reports, start_at = fan_out(_cycle_worker, specs, timeout + 30)
    return summarize(reports, start_at, messages if (record and messages) else None)


# --- fixed-duration loops ---------------------------------------------------


async def _loop_main(spec: dict, progress, start_at: float) -> dict:
    report = {"requests": 0, "statuses": {}, "errors": {}}
    end = start_at + spec["duration"]

    async def loop(client):
        while time.time() < end:
            try:
                status, _ = await client.request("GET", spec["path"])
            except ConnectionError:
                status = "closed"
            report["requests"] += 1
            report["statuses"][status] = report["statuses"].get(status, 0) + 1

    timeout = spec["duration"] + spec["grace"] + 10  # long-polls may queue in the server
    async with _Clients(spec["client"], spec["targets"], timeout) as clients:
        tasks = [loop(clients.new()) for _ in range(spec["concurrency"])]
        wait_until(start_at)
        cpu = time.process_time()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), spec["duration"] + spec["grace"])
        except TimeoutError:
            pass  # requests still held open at the end (long-polls)
        report["cpu"] = time.process_time() - cpu
    return report


def _loop_worker(spec: dict, progress, start_at: float) -> dict:
    return asyncio.run(_loop_main(spec, progress, start_at))


def loop(
    targets: list[tuple[str, int]],
    path: str,
    *,
    concurrency: int,
    processes: int,
    duration: float,
    client: str = "raw",
    grace: float = 5.0,
    during=None,
) -> dict:
    """GET ``path`` in a loop on ``concurrency`` connections for ``duration`` seconds.

    ``during(start_at)`` runs in this process while the load runs (the
    long-poll workload measures the server's CPU there).
    """
    specs = [
        {
            "client": client,
            "targets": targets,
            "path": path,
            "concurrency": n,
            "duration": duration,
            "grace": grace,
        }
        for n in split(concurrency, processes)
    ]
    reports, _ = fan_out(_loop_worker, specs, duration + grace + 30, during=during)
    statuses: dict = {}
    for r in reports:
        for status, n in r["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    requests = sum(r["requests"] for r in reports)
    return {
        "requests": requests,
        "rate": requests / duration,
        "statuses": statuses,
        "client_cpu_cores": sum(r["cpu"] for r in reports) / duration,
    }
