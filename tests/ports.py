"""Ports for the servers that the tests and CI's fuzzing start.

.ci/run runs the suites of the three databases at once on one machine, then
the three fuzzing runs at once. Each database takes its servers' ports from a
range of its own, under the kernel's ephemeral ports: two of them could
otherwise pick the same free port in the moment before their servers bind it,
and as granian binds with SO_REUSEPORT both servers would come up sharing the
port, a request to one answered by the other, on another database.
"""

import random
import socket

# By Django's connection.vendor.
RANGES = {
    "sqlite": range(20_000, 24_000),
    "postgresql": range(24_000, 28_000),
    "mysql": range(28_000, 32_000),
}
_handed_out: set[int] = set()


def free_port(vendor: str) -> int:
    """A port of ``vendor``'s range that nothing listens on and that this process
    has not handed out before (two servers started together never get one port)."""
    while True:
        port = random.choice(RANGES[vendor])
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
