"""``LazyTasks``: a group's members read from a generator only as far as they are needed.

A group or chord header given a generator keeps it unread until it is sent, and sending
reads it one member at a time, publishing each as it comes (as Celery does): a header of a
million tasks, or one whose generator waits on something, never has to exist whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class LazyTasks(list[Any]):
    """A list filled from an iterator. Iterating reads just ahead of the loop (and goes on
    over the rest if something reads it all meanwhile); every other use reads it all first."""

    def __init__(self, source: Iterable[Any]) -> None:
        super().__init__()
        self._source: Iterator[Any] | None = iter(source)

    @property
    def pending(self) -> bool:
        """True while part of the source is still unread."""
        return self._source is not None

    def _pull(self) -> bool:
        if self._source is None:
            return False
        try:
            item = next(self._source)
        except StopIteration:
            self._source = None
            return False
        list.append(self, item)
        return True

    def _fill(self) -> None:
        while self._pull():
            pass

    def __iter__(self) -> Iterator[Any]:
        index = 0
        while index < list.__len__(self) or self._pull():
            yield list.__getitem__(self, index)
            index += 1

    def __bool__(self) -> bool:
        return list.__len__(self) > 0 or self._pull()

    def __repr__(self) -> str:
        return repr(list(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(item, memo) for item in self]


def _reading_all(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def read_all_then(self: LazyTasks, *args: Any, **kwargs: Any) -> Any:
        self._fill()
        return method(self, *args, **kwargs)

    read_all_then.__name__ = name
    return read_all_then


for _name in (
    "__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__", "__reversed__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__iadd__",
    "__mul__", "__rmul__", "__imul__", "append", "extend", "insert", "pop", "remove",
    "index", "count", "sort", "reverse", "copy", "clear",
):  # fmt: skip
    setattr(LazyTasks, _name, _reading_all(_name))


def with_last(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """``(item, is_last)`` pairs, reading one item ahead to know which is the last."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True
