"""A/B enqueue rate: ``noop.delay()`` in a loop from two source trees, interleaved with the
floor under it, in one run on one private redis-server.

Run from the repository root::

    python -m bench.ab_enqueue --variant main=/path/to/other/tree --variant here=. [-n 20000]
                               [--rounds 5] [--no-floor]

Every round measures, in an order that alternates between rounds:

* ``lpush``: ``redis-benchmark -c 1 -t lpush``, a C client doing one LPUSH per round trip;
* ``script``: ``redis-benchmark -c 1`` sending the publish script's EVALSHA (a payload of
  the same size), so the server-side cost of the script against a bare LPUSH shows;
* ``raw``: a Python loop writing the exact bytes one ``delay()`` sends (EVALSHA of the
  publish script with a real message) on a plain socket and reading the one-line reply;
* ``redis-py``: the same EVALSHA through ``redis.Redis.evalsha`` (pool, packing, hiredis);
* each variant: ``python -m bench.client minicelery enqueue -n N`` from its own tree, in a
  fresh interpreter (what ``bench.run`` times), no worker running;
* with ``--celery``, Celery's client the same way (``bench.celery_app``).

Every ``delay()`` waits for Redis's reply, so each figure is one client, one round trip per
call; the database is flushed before each measurement. The 1-minute load average is printed
with every line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.ab_drain import _env, parse_variant
from bench.run import RedisServer, redis_server

DB = 1


def _load() -> float:
    return os.getloadavg()[0]


def publish_call(server: RedisServer) -> tuple[str, list[bytes | str | int]]:
    """The publish script's SHA (loaded now) and the arguments of one ``delay()``'s EVALSHA
    of ``bench.mc_app.noop``, built with this tree's message code."""
    from minicelery.message import MessageOptions, build_message
    from minicelery.redislayer.keys import KeySchema
    from minicelery.redislayer.scripts import script_source
    from minicelery.utils import uuid

    client = server.client(DB)
    sha = str(client.script_load(script_source("minicelery.broker", "publish", "common")))
    keys = KeySchema("minicelery")
    message = build_message(
        "bench.mc_app.noop", (), {}, MessageOptions(task_id=uuid(), queue="celery")
    )
    args: list[bytes | str | int] = [
        3, keys.queue("celery", 0), keys.wake("celery"), keys.levels("celery"),
        message.encode(), 0,
    ]  # fmt: skip
    return sha, args


def _packed(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_benchmark(server: RedisServer, n: int, command: Sequence[str]) -> float:
    """Requests per second of ``redis-benchmark -c 1`` (``-t lpush`` when no command)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return float("nan")
    argv = [binary, "-p", str(server.port), "--dbnum", str(DB), "-c", "1", "-n", str(n), "-q"]
    argv += list(command) if command else ["-t", "lpush"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True).stdout
    rates = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(rates[-1])


def raw_socket(server: RedisServer, n: int, packed: bytes) -> float:
    """One write of ``packed`` and one read of its (one-line) reply per call."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_packed("SELECT", DB))
    sock.recv(64)
    send, recv = sock.sendall, sock.recv
    start = time.perf_counter()
    for _ in range(n):
        send(packed)
        if not recv(64).endswith(b"\r\n"):
            raise RuntimeError("reply split across reads")
    elapsed = time.perf_counter() - start
    sock.close()
    return n / elapsed


def redis_py(server: RedisServer, n: int, sha: str, args: Sequence[bytes | str | int]) -> float:
    client = server.client(DB)
    evalsha = client.evalsha
    numkeys, rest = int(args[0]), args[1:]
    evalsha(sha, numkeys, *rest)
    start = time.perf_counter()
    for _ in range(n):
        evalsha(sha, numkeys, *rest)
    return n / (time.perf_counter() - start)


def variant_rate(
    src: Path, server: RedisServer, n: int, system: str = "minicelery"
) -> tuple[float, float | None]:
    """Calls per second and the client's CPU microseconds per call."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.client", system, "enqueue", "-n", str(n)],
        cwd=src, env=_env(src, server.url(DB)), check=True, capture_output=True, timeout=600,
    ).stdout  # fmt: skip
    result = json.loads(out.splitlines()[-1])
    cpu = result.get("cpu_seconds")  # absent from a tree whose client does not report it
    return float(result["rate"]), None if cpu is None else 1e6 * float(cpu) / n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], help="name=source dir")
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-floor", action="store_true", help="the variants only")
    parser.add_argument("--celery", action="store_true", help="Celery's client too")
    args = parser.parse_args(argv)
    rows: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with redis_server() as server:
        sha, call = publish_call(server)
        packed = _packed("EVALSHA", sha, *call)
        message = call[4]
        assert isinstance(message, bytes)
        payload = "x" * len(message)  # redis-benchmark takes text: a payload of the same size
        script = ["evalsha", sha, *(str(a) for a in call[:4]), payload, "0"]
        phases: list[tuple[str, Callable[[], float | tuple[float, float | None]]]] = []
        if not args.no_floor:
            phases += [
                ("lpush", lambda: redis_benchmark(server, args.n, [])),
                ("script", lambda: redis_benchmark(server, args.n, script)),
                ("raw", lambda: raw_socket(server, args.n, packed)),
                ("redis-py", lambda: redis_py(server, args.n, sha, call)),
            ]
        for spec in args.variant:
            name, src, _ = parse_variant(spec)
            phases.append((name, lambda src=src: variant_rate(src, server, args.n)))  # type: ignore[misc]
        if args.celery:
            here = Path(__file__).resolve().parent.parent
            phases.append(("celery", lambda: variant_rate(here, server, args.n, "celery")))
        for round_no in range(args.rounds):
            order = phases if round_no % 2 == 0 else phases[::-1]
            for name, measure in order:
                server.client(DB).flushdb()
                load = _load()
                measured = measure()
                rate, cpu = measured if isinstance(measured, tuple) else (measured, None)
                rows.setdefault(name, []).append(rate)
                if cpu is not None:
                    cpus.setdefault(name, []).append(cpu)
                shown = "" if cpu is None else f", client CPU {cpu:5.1f} us/call"
                line = f"{name:>10}: {rate:9,.0f}/s ({1e6 / rate:5.1f} us/call{shown})"
                print(f"round {round_no + 1} {line}  load {load:.2f}", flush=True)
    for name, rates in rows.items():
        median = statistics.median(rates)
        shown = f", client CPU {statistics.median(cpus[name]):5.1f} us/call" if name in cpus else ""
        print(f"median {name:>10}: {median:9,.0f}/s ({1e6 / median:5.1f} us/call{shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
