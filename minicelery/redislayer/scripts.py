"""Lua scripts: each lives in a ``.lua`` file beside the code that runs it, and every one is
loaded here, once per client, to run with EVALSHA (see :class:`.wire.FastPath`)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any


@functools.cache
def script_source(package: str, name: str, prelude: str | None = None) -> str:
    """The source of ``<package>/scripts/<name>.lua``, after the helpers in
    ``<prelude>.lua`` of the same folder when given (read from disk once per process)."""
    folder = resources.files(package).joinpath("scripts")
    head = folder.joinpath(f"{prelude}.lua").read_text() if prelude else ""
    return head + folder.joinpath(f"{name}.lua").read_text()


def register(client: Any, package: str, name: str, prelude: str | None = None) -> Any:
    """A redis-py ``Script`` for ``client``: ``.sha`` for EVALSHA, ``.script`` to load it
    again after a Redis restart, and callable with ``keys``/``args``/``client`` (a pipeline)."""
    return client.register_script(script_source(package, name, prelude))
