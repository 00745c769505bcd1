"""Settings shown to people: secrets censored as Celery censors them (``conf.table()``, the
``inspect conf`` reply, bug reports), URLs with their passwords masked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Setting names whose values are never shown (Celery's list).
HIDDEN = re.compile(
    "API|TOKEN|KEY|SECRET|PASS|PROFANITIES_LIST|SIGNATURE|DATABASE|BEAT_DBURI", re.IGNORECASE
)
MASK = "*" * 8
_NOT_HIDDEN = frozenset({"key_prefix"})  # ours: names a Redis prefix, not a secret


def mask_url(url: str, mask: str = MASK) -> str:
    """``url`` with the password of each ``;``-separated server hidden; a password may hold
    ``@`` or ``,`` (the last ``@`` before the host ends it)."""
    return ";".join(_mask_one(part, mask) for part in url.split(";"))


def _mask_one(url: str, mask: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@", 0, _host_end(rest))
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}://{user}:{mask}{rest[at:]}" if colon else url


def _host_end(rest: str) -> int:
    """Where the network location ends: the first ``/`` after the last ``@``, or the end.
    Passwords may contain ``/`` rarely; hosts never contain ``@``."""
    last_at = rest.rfind("@")
    slash = rest.find("/", last_at + 1)
    return slash if slash >= 0 else len(rest)


def censor(key: str, value: Any) -> Any:
    """The value of setting ``key`` as it may be shown."""
    if isinstance(value, Mapping):
        return censored(value)
    if key in _NOT_HIDDEN:
        return value
    if HIDDEN.search(key):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def censored(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with secrets hidden (nested mappings too)."""
    return {key: censor(str(key), value) for key, value in settings.items()}


__all__ = ["HIDDEN", "MASK", "censor", "censored", "mask_url"]
