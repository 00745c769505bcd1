"""``xmap``, ``xstarmap`` and ``chunks``: one task applied to many arguments, in one
message (map/starmap) or split into a group of such messages (chunks)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .group import group
from .signature import Signature, maybe_signature, register_type

if TYPE_CHECKING:
    from ..app import Celery


def _items(it: Iterable[Any]) -> list[Any]:
    # Ranges travel as lists: the guide maps over ``[range(10), range(100)]``.
    return [list(item) if isinstance(item, range) else item for item in it]


class _basemap(Signature):
    """A call of the builtin map task: ``task`` applied to each item, in one worker."""

    _task_name = ""
    _kind = ""

    def __init__(self, task: Any, it: Iterable[Any], app: Celery | None = None, **options: Any):
        task_sig = maybe_signature(task, app)
        super().__init__(
            self._task_name,
            (),
            {"task": task_sig, "it": _items(it)},
            options,
            immutable=True,
            app=app or getattr(task_sig, "_app", None),
        )
        self["subtask_type"] = self._kind

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        return cls(d["kwargs"]["task"], d["kwargs"]["it"], app=app, **d.get("options", {}))

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        task = maybe_signature(self.kwargs["task"], self._app)
        # Routed as the mapped task would be (its queue), unless told otherwise.
        route = {"queue": task.type.queue} if task.task in self.app.tasks else {}
        opts = {**{k: v for k, v in route.items() if v}, **self.options, **options}
        content = {"task": dict(task), "it": list(self.kwargs["it"])}
        return self.type.apply_async((), content, **opts)

    def __repr__(self) -> str:
        task = self.kwargs["task"]
        return f"[{task.get('task')}(x) for x in {self.kwargs['it']!r}]"


@register_type("xmap")
class xmap(_basemap):
    """``task.map(it)``: ``[task(item) for item in it]`` in one task."""

    _task_name = "celery.map"
    _kind = "xmap"


@register_type("xstarmap")
class xstarmap(_basemap):
    """``task.starmap(it)``: ``[task(*item) for item in it]`` in one task."""

    _task_name = "celery.starmap"
    _kind = "xstarmap"


def chunked(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    iterator = iter(it)
    while True:
        part = list(itertools.islice(iterator, n))
        if not part:
            return
        yield part


@register_type("chunks")
class chunks(Signature):
    """``task.chunks(it, n)``: the items in parts of ``n``, each part one starmap task,
    all run as a group; the result is a list of lists."""

    def __init__(
        self, task: Any, it: Iterable[Any], n: int, app: Celery | None = None, **options: Any
    ) -> None:
        task_sig = maybe_signature(task, app)
        super().__init__(
            "celery.chunks",
            (),
            {"task": task_sig, "it": _items(it), "n": int(n)},
            options,
            immutable=True,
            app=app or getattr(task_sig, "_app", None),
        )
        self["subtask_type"] = "chunks"

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        content = d["kwargs"]
        return cls(content["task"], content["it"], content["n"], app=app, **d.get("options", {}))

    def group(self) -> group:
        """The group of starmap tasks, one per part."""
        task = maybe_signature(self.kwargs["task"], self._app)
        parts = chunked(self.kwargs["it"], self.kwargs["n"])
        return group([xstarmap(task, part, app=self._app) for part in parts], app=self._app)

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        return self.group().apply_async(args, kwargs, **{**self.options, **options})

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        return self.group().apply(args, kwargs, **options)

    def __call__(self, **options: Any) -> Any:
        return self.apply_async(**options)

    def __repr__(self) -> str:
        return f"chunks({self.kwargs['task']!r}, n={self.kwargs['n']})"
