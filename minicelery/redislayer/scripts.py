"""Lua scripts: each lives in a ``.lua`` file beside the code that runs it, and every one is
loaded here, once per client, to run with EVALSHA (see :class:`.wire.FastPath`)."""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any


@functools.cache
def script_source(package: str, name: str, prelude: str | None = None) -> str:
    """The source of ``<package>/scripts/<name>.lua``, after the helpers in
    ``<prelude>.lua`` of the same folder when given (read from disk once per process)."""
    head = _read(package, f"{prelude}.lua") if prelude else ""
    return head + _read(package, f"{name}.lua")


def _read(package: str, filename: str) -> str:
    """A file of ``package``'s ``scripts`` folder, read by the package's own loader (from
    disk, or from a zip archive), as ``pkgutil.get_data`` does. Not ``importlib.resources``:
    it and the ``zipfile`` it imports cost every worker process that loads a script (each
    child does) over a megabyte of memory, for two file reads."""
    module = importlib.import_module(package)
    loader: Any = module.__spec__.loader if module.__spec__ is not None else None
    if module.__file__ is None or not hasattr(loader, "get_data"):
        raise FileNotFoundError(f"no scripts folder for package {package!r}")
    path = os.path.join(os.path.dirname(module.__file__), "scripts", filename)
    data: bytes = loader.get_data(path)
    return data.decode()


def register(client: Any, package: str, name: str, prelude: str | None = None) -> Any:
    """A redis-py ``Script`` for ``client``: ``.sha`` for EVALSHA, ``.script`` to load it
    again after a Redis restart, and callable with ``keys``/``args``/``client`` (a pipeline)."""
    return client.register_script(script_source(package, name, prelude))


def run_again(wire: Any, command: tuple[Any, ...], script: Any) -> Any:
    """Run an ``EVALSHA`` command (as packed for a pipeline) again through ``wire``, which
    loads ``script`` if Redis forgot it."""
    numkeys = int(command[2])
    return wire.evalsha(script, command[3 : 3 + numkeys], command[3 + numkeys :])
