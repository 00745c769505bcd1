"""``minicelery events --dump``: one line per event as it arrives, in Celery's dumper shape
``<hostname> [<UTC time>] <type>: <task name>[<uuid>] <field>=<value>, ...``."""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

# Shown in the line's prefix, or bookkeeping a reader of the dump does not need.
HIDDEN = frozenset(
    {"type", "hostname", "timestamp", "utcoffset", "clock", "local_received", "uuid", "name"}
)
NAMES_KEPT = 4096  # task names remembered from task-sent/received, for the later events


class Dumper:
    """Formats events for the terminal; ``out`` writes one line (flushed)."""

    def __init__(self, out: Callable[[str], None], as_json: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self._names: collections.OrderedDict[str, str] = collections.OrderedDict()

    def on_event(self, event: dict[str, Any]) -> None:
        self.out(json.dumps(event, default=repr) if self.as_json else self.format(event))

    def format(self, event: dict[str, Any]) -> str:
        kind = str(event.get("type"))
        when = dt.datetime.fromtimestamp(float(event.get("timestamp") or 0), dt.timezone.utc)
        prefix = f"{event.get('hostname')} [{when:%Y-%m-%d %H:%M:%S.%f}] {kind}:"
        shown = {k: v for k, v in event.items() if k not in HIDDEN}
        if kind.startswith("task-"):
            shown.pop("traceback", None)  # one line per event; the exception says enough
            if "pid" in shown and kind != "task-started":
                del shown["pid"]
            prefix = f"{prefix} {self._task(event)}"
        else:
            shown.pop("pid", None)
        fields = ", ".join(f"{key}={shown[key]}" for key in sorted(shown))
        return f"{prefix} {fields}" if fields else prefix

    def _task(self, event: dict[str, Any]) -> str:
        uuid = str(event.get("uuid"))
        name = event.get("name")
        if name:
            self._names[uuid] = str(name)
            if len(self._names) > NAMES_KEPT:
                self._names.popitem(last=False)
        return f"{self._names.get(uuid, '')}[{uuid}]"
