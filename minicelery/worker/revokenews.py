"""What a consuming prefork child knows of revokes: the ids and the stamps its main process
forwarded, and those it reads itself from the revoke news in Redis after each reserve.

The main process hears of a revoke on its own connection and forwards it over the pipe; a
child reserves on another one. A client writes a revoke before it sends the task, so the
news read *after* the reserve that took the task has it: such a task never runs, even when
the forwarded revoke is still on its way (in the classic pool the main process catches up
on the commands before a task starts, to the same end)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..exceptions import OperationalError

logger = logging.getLogger(__name__)

#: Seconds of news before its start a child reads first: revokes its main process may not
#: have forwarded yet (its host's clock may also lag Redis's by a little).
LOOKBACK = 5.0


class RevokeNews:
    """The revoked ids (``revoked``, shared with the child's intake) and stamps of one
    child, and its cursor in the revoke news."""

    def __init__(self, broker: Any, revoked: set[str]) -> None:
        self.revoked = revoked
        self.stamps: dict[str, list[Any]] = {}
        self.cursor = f"{int((time.time() - LOOKBACK) * 1000)}-0"
        self._after: list[tuple[tuple[Any, ...], Any]] = []  # for this cursor
        try:
            self.mailbox: Any = broker.mailbox()
        except NotImplementedError:  # a broker without remote control has no news either
            self.mailbox = None
        else:
            self._after = [(self.mailbox.news_command(self.cursor), self.read)]

    def after_reserve(self) -> list[tuple[tuple[Any, ...], Any]]:
        """The command to send right behind a reserve, with what reads its reply: an empty
        reply (nothing to do) unless a revoke came since the last read."""
        return self._after

    def read(self, reply: Any) -> None:
        """Take the revokes of a news reply."""
        if not reply:  # the common case, once per round trip
            return
        self.cursor, ids, stamps = self.mailbox.news(self.cursor, reply)
        self._after = [(self.mailbox.news_command(self.cursor), self.read)]
        self.revoked.update(ids)
        self.add_stamps(stamps)

    def catch_up(self) -> None:
        """Read the news now (messages came with a wake-up, not with a round trip that read
        it). A Redis that does not answer leaves the forwarded revokes only."""
        if self.mailbox is None:
            return
        try:
            self.read(self.mailbox.news_since(self.cursor))
        except OperationalError as exc:
            logger.debug("Could not read the revoke news: %s", exc)

    def add_stamps(self, headers: Mapping[str, Any]) -> None:
        """Revoke these stamps too (``{stamp name: value or values}``)."""
        for name, values in headers.items():
            known = self.stamps.setdefault(name, [])
            for value in values if isinstance(values, (list, tuple)) else [values]:
                if value not in known:
                    known.append(value)
