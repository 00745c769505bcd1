"""The Redis error names callers catch take in redis-py's classes once redis-py is loaded,
and nobody holds a copy taken before that."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "minicelery"
WIDENED = {"REDIS_ERRORS", "ResponseError", "NoScriptError", "RedisError"}


def test_no_module_binds_the_error_tuples_by_value() -> None:
    """``from .errors import REDIS_ERRORS`` would keep the tuple as it was at import time,
    without redis-py's classes: every caller must read ``errors.REDIS_ERRORS`` instead."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("errors"):
                bound = {alias.name for alias in node.names} & WIDENED
                if bound and "redislayer" in f"{path} {node.module}":
                    offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(bound)}")
    assert offenders == []


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_our_client_loads_no_redis_py_and_redis_py_widens_the_tuples() -> None:
    code = (
        "import sys\n"
        "from minicelery.redislayer import errors\n"
        "from minicelery.redislayer.connect import client_for_url, client_from_url\n"
        "client = client_for_url('redis://127.0.0.1:1/0')\n"
        "print('redis' in sys.modules, len(errors.REDIS_ERRORS), end=' ')\n"
        "client_from_url('redis://127.0.0.1:1/0')\n"
        "import redis\n"
        "print(all(issubclass(k, errors.REDIS_ERRORS) for k in "
        "(redis.ConnectionError, redis.TimeoutError)),\n"
        "      issubclass(redis.exceptions.NoScriptError, errors.NoScriptError),\n"
        "      issubclass(redis.ResponseError, errors.ResponseError),\n"
        "      issubclass(redis.RedisError, errors.RedisError))\n"
    )
    assert run(code) == "False 2 True True True True"


def test_memory_urls_catch_fakeredis_errors() -> None:
    code = (
        "from minicelery.redislayer import errors\n"
        "from minicelery.redislayer.memory import memory_client\n"
        "client = memory_client('memory://errors')\n"
        "client.set('k', 'v')\n"
        "try:\n"
        "    client.incr('k')\n"
        "except errors.ResponseError as exc:\n"
        "    print('caught')\n"
    )
    assert run(code) == "caught"
