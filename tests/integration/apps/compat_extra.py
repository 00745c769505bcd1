"""A task module a worker loads only with ``-I``."""

from __future__ import annotations

from tests.integration.apps.compat import app


@app.task(name="compat_extra.loaded")
def loaded() -> str:
    return "loaded by -I"
