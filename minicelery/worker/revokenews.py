"""What a consuming prefork child knows of revokes: the ids and the stamps its main process
forwarded, and those it reads itself from the revoke news in Redis after each reserve.

The main process hears of a revoke on its own connection and forwards it over the pipe; a
child reserves on another one. A client writes a revoke before it sends the task, so the
news read *after* the reserve that took the task has it: such a task never runs, even when
the forwarded revoke is still on its way (in the classic pool the main process catches up
on the commands before a task starts, to the same end)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

#: Seconds of news before its start a child reads first: revokes its main process may not
#: have forwarded yet (its host's clock may also lag Redis's by a little).
LOOKBACK = 5.0
#: Seconds after it was published a stamp revoke read from the news counts without the main
#: process's word (which says it obeyed it, or not: one published before it listened).
HEARD_FOR = 10.0


class RevokeNews:
    """The revoked ids (``revoked``, shared with the child's intake) and stamps of one
    child, and its cursor in the revoke news.

    The stamps are the main process's (``forwarded``: its whole set, which code in that
    process may also clear) and those read from the news that it has not yet said it
    obeyed (``heard``, by the revoke's news id): together, ``stamps``."""

    def __init__(self, broker: Any, revoked: set[str], hostname: str = "") -> None:
        self.revoked = revoked
        self.hostname = hostname
        self.stamps: dict[str, list[Any]] = {}
        self.forwarded: dict[str, list[Any]] = {}
        # news id -> (when published, stamps)
        self.heard: dict[str, tuple[float, dict[str, Any]]] = {}
        # News ids the main process obeyed: its word may come before this child reads the
        # news (it was busy, or read its pipe first).
        self.obeyed: dict[str, float] = {}
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
        self.cursor, ids, stamp_news = self.mailbox.news(self.cursor, reply)
        self._after = [(self.mailbox.news_command(self.cursor), self.read)]
        self.revoked.update(ids)
        for news in stamp_news:
            news_id = str(news.get("id"))
            if news_id in self.obeyed:
                continue
            if not news.get("to") or self.hostname in news["to"]:
                self.heard[news_id] = (float(news["at"]), dict(news["stamps"]))
        if stamp_news:
            self._merge()

    def forward(self, stamps: Mapping[str, Any], obeyed: Sequence[str] = ()) -> None:
        """The main process's revoked stamps now, and the news ids it obeyed since."""
        self.forwarded = dict(stamps)
        now = time.time()
        for news_id in obeyed:
            self.heard.pop(news_id, None)
            self.obeyed[news_id] = now
        self._merge()

    def _merge(self) -> None:
        too_old = time.time() - HEARD_FOR
        self.heard = {key: item for key, item in self.heard.items() if item[0] > too_old}
        # An obeyed id is kept until its news is too old to count, with a margin for clocks.
        forgotten = too_old - LOOKBACK
        self.obeyed = {key: when for key, when in self.obeyed.items() if when > forgotten}
        merged: dict[str, list[Any]] = {}
        for headers in [self.forwarded, *(stamps for _, stamps in self.heard.values())]:
            for name, values in headers.items():
                known = merged.setdefault(name, [])
                for value in values if isinstance(values, (list, tuple)) else [values]:
                    if value not in known:
                        known.append(value)
        self.stamps = merged
