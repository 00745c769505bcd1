"""Canvas stamping (Celery 5.3's): a visitor walks a workflow and returns headers
("stamps") for each part; stamps travel in every task message as ``stamps`` and
``stamped_headers``, are seen by the worker as ``request.stamps``, and survive retries.

A stamp is kept in the signature's options under its own name, and ``stamped_headers``
lists which options are stamps, as Celery stores them, so stamped signatures serialize and
compare the same way.
"""

from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .signature import Signature

Headers = dict[str, Any]


class StampingVisitor(metaclass=ABCMeta):
    """Override :meth:`on_signature` (required) and any other hook; each returns the
    headers to stamp on what it visits (the ``*_end`` hooks return nothing)."""

    def on_group_start(self, group: Any, **headers: Any) -> Headers:
        return {}

    def on_group_end(self, group: Any, **headers: Any) -> None:
        return None

    def on_chain_start(self, chain: Any, **headers: Any) -> Headers:
        return {}

    def on_chain_end(self, chain: Any, **headers: Any) -> None:
        return None

    @abstractmethod
    def on_signature(self, sig: Any, **headers: Any) -> Headers:
        """The stamps for one task signature."""

    def on_chord_header_start(self, sig: Any, **headers: Any) -> Headers:
        """A chord's header is stamped as the group it is."""
        return self.on_group_start(sig.header, **headers)

    def on_chord_header_end(self, sig: Any, **headers: Any) -> None:
        self.on_group_end(sig.header, **headers)

    def on_chord_body(self, sig: Any, **headers: Any) -> Headers:
        return {}

    def on_callback(self, callback: Any, **headers: Any) -> Headers:
        return {}

    def on_errback(self, errback: Any, **headers: Any) -> Headers:
        return {}


def merge_stamps(into: Headers, other: Headers | None, append: bool) -> None:
    """Merge ``other`` into ``into`` as Celery does: nested dicts merge, two lists are
    concatenated; other duplicates become a list of both with ``append``, else the value
    already in ``into`` stays. Keys only in ``other`` are added."""
    if not other:
        return
    for key, value in list(into.items()):
        if key not in other:
            continue
        theirs = other[key]
        if isinstance(value, dict) and isinstance(theirs, dict):
            merge_stamps(value, theirs, append)
        elif isinstance(value, list) and isinstance(theirs, list):
            into[key] = [*value, *theirs]
        elif append:
            into[key] = [*([] if value is None else _as_list(value)), theirs]
    for key, theirs in other.items():
        into.setdefault(key, theirs)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def collect_stamps(sig: Signature, visitor_headers: Headers | None, append: bool,
                   own: bool, headers: Headers) -> Headers:  # fmt: skip
    """The stamps for ``sig``: ``headers`` from above, then the visitor's, then (with
    ``own``) the stamps ``sig`` already carries, with ``stamped_headers`` naming them."""
    headers = dict(headers)
    headers.setdefault("stamped_headers", list(headers))
    if visitor_headers is not None:
        visitor_headers = dict(visitor_headers)
        visitor_headers.setdefault("stamped_headers", list(visitor_headers))
        merge_stamps(headers, visitor_headers, append)
        headers["stamped_headers"] = _unique(headers["stamped_headers"])
    if own:
        names = _unique([*headers["stamped_headers"], *sig.options.get("stamped_headers", [])])
        headers["stamped_headers"] = names
        mine = {k: v for k, v in sig.options.items() if k in names and k != "stamped_headers"}
        merge_stamps(headers, mine, append)
        headers["stamped_headers"] = _unique(headers["stamped_headers"])
    return headers


def stamp(sig: Signature, visitor: StampingVisitor | None = None, append_stamps: bool = False,
          **headers: Any) -> Any:  # fmt: skip
    """``sig.stamp(visitor, append_stamps, **headers)``: stamp ``sig`` and everything it
    will run (chain steps, group members, a chord's header and body, links)."""
    kind = sig.get("subtask_type")
    if kind in ("chain", "group"):
        return _stamp_container(sig, kind, visitor, append_stamps, headers)
    if kind == "chord":
        return _stamp_chord(sig, visitor, append_stamps, headers)
    stamp_links(sig, visitor, append_stamps, **headers)
    found = visitor.on_signature(sig, **headers) or {} if visitor is not None else None
    return sig.set(**collect_stamps(sig, found, append_stamps, True, headers))


def _stamp_container(sig: Signature, kind: str, visitor: StampingVisitor | None,
                     append: bool, headers: Headers) -> None:  # fmt: skip
    found = None
    if visitor is not None:
        start = visitor.on_chain_start if kind == "chain" else visitor.on_group_start
        found = start(sig, **headers) or {}
    headers = collect_stamps(sig, found, append, True, headers)
    stamp_links(sig, visitor, append, **headers)
    tasks: list[Any] = sig.kwargs["tasks"]
    for index, task in enumerate(tasks):
        tasks[index] = _as_signature(task, sig)
        stamp(tasks[index], visitor, append, **headers)
    if visitor is not None:
        end = visitor.on_chain_end if kind == "chain" else visitor.on_group_end
        end(sig, **headers)


def _stamp_chord(sig: Any, visitor: StampingVisitor | None, append: bool,
                 headers: Headers) -> None:  # fmt: skip
    found = visitor.on_chord_header_start(sig, **headers) or {} if visitor else None
    headers = collect_stamps(sig, found, append, True, headers)
    stamp_links(sig, visitor, append, **headers)
    tasks: list[Any] = sig.header.kwargs["tasks"]
    for index, task in enumerate(tasks):
        tasks[index] = _as_signature(task, sig)
        stamp(tasks[index], visitor, append, **dict(headers))
    if visitor is not None:
        visitor.on_chord_header_end(sig, **headers)
        if sig.body is not None:
            found = visitor.on_chord_body(sig, **headers) or {}
            headers = collect_stamps(sig, found, append, True, headers)
            stamp(sig.body, visitor, append, **headers)


def stamp_links(sig: Signature, visitor: StampingVisitor | None, append_stamps: bool = False,
                **headers: Any) -> None:  # fmt: skip
    """Stamp ``sig``'s callbacks and errbacks with the visitor and ``headers`` (but not
    with ``sig``'s own stamps: a link is a task of its own)."""
    for option, hook in (("link", "on_callback"), ("link_error", "on_errback")):
        links = sig.options.get(option)
        if not links:
            continue
        if not isinstance(links, list):
            links = sig.options[option] = [links]
        current = copy.deepcopy(headers)
        for index, link in enumerate(links):
            links[index] = link = _as_signature(link, sig)
            found = getattr(visitor, hook)(link, **current) or {} if visitor else None
            current = collect_stamps(link, found, append_stamps, False, current)
            stamp(link, visitor, append_stamps, **current)


def _as_signature(task: Any, parent: Signature) -> Signature:
    from .signature import Signature, maybe_signature

    found = maybe_signature(task, app=parent._app)
    assert isinstance(found, Signature)
    return found


def message_stamps(options: dict[str, Any]) -> Headers:
    """The message headers that carry the stamps in ``apply_async`` options: ``stamped_headers``
    (their names) and ``stamps`` (name -> value); empty when nothing is stamped."""
    names = options.get("stamped_headers")
    if not names:
        return {}
    names = _unique(_as_list(names))
    return {"stamped_headers": names, "stamps": {name: options.get(name) for name in names}}


def stamp_options(request: Any) -> Headers:
    """The ``apply_async`` options that carry a running task's stamps on to its retry or
    replacement."""
    names = getattr(request, "stamped_headers", None)
    if not names:
        return {}
    stamps = getattr(request, "stamps", None) or {}
    return {"stamped_headers": list(names), **{name: stamps.get(name) for name in names}}


__all__ = ["StampingVisitor", "message_stamps", "stamp", "stamp_links", "stamp_options"]
