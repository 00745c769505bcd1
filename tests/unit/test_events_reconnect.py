"""``minicelery events`` reads on through a lost connection to Redis (a restart, a failover):
it says so once, tries again with a pause, and misses no event the stream still holds."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery
from minicelery.cli.events import Reader
from minicelery.exceptions import OperationalError


def test_a_lost_connection_is_said_once_and_reading_goes_on(
    app: Celery, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[dict[str, Any]] = []
    receiver = app.events.Receiver(handlers={"*": seen.append})
    read = receiver.stream.read
    failures = iter([True, True, False])

    def flaky_read(after: bytes, timeout: float) -> list[tuple[bytes, bytes]]:
        if next(failures, False):
            raise OperationalError("reading events: Redis is unreachable")
        return read(after, timeout)

    receiver.stream.read = flaky_read  # type: ignore[method-assign]
    app.events.Dispatcher(hostname="w1@host").send("worker-online")
    reader = Reader(receiver)

    reader.drain(0.1)
    reader.drain(0.1)
    assert seen == [] and reader.pause > 0
    reader.drain(1.0)

    assert [e["type"] for e in seen] == ["worker-online"]  # sent while Redis was away
    assert reader.pause == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "-> minicelery events: connection lost (reading events: Redis is unreachable); "
        "reconnecting",
        "-> minicelery events: reconnected",
    ]
