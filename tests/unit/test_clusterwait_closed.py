"""A pending cluster ``BLPOP`` whose connection was closed under it (a refresh of the slot
map after its master died closes every connection to that node) is a lost connection for
the consumer to retry, not a crash of the child that waited on it."""

from __future__ import annotations

import select
from typing import Any

import pytest

from minicelery.redislayer import errors
from minicelery.redislayer.clusterwait import SlotWaits, _Pop


class _Closed:
    _sock = None

    def disconnect(self) -> None:
        pass


class _Pool:
    def __init__(self) -> None:
        self.released: list[Any] = []

    def release(self, connection: Any) -> None:
        self.released.append(connection)


@pytest.mark.skipif(not SlotWaits.available(), reason="epoll is Linux's")
def test_a_pop_whose_connection_was_closed_is_a_lost_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refreshed: list[Any] = []
    monkeypatch.setattr("minicelery.redislayer.clusterwait.refresh_slots", refreshed.append)
    waits = SlotWaits(client="cluster")
    waits._epoll = select.epoll()
    pool, connection = _Pool(), _Closed()
    waits._pending["p:wake:q0"] = _Pop(pool, connection)

    with pytest.raises(errors.ConnectionLost, match="p:wake:q0"):
        waits.finish()

    assert waits._pending == {} and pool.released == [connection]
    assert refreshed == ["cluster"]  # the next pop goes where the slot is now
    waits._epoll.close()
