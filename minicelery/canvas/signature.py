"""``Signature``: a task call (name, args, kwargs, options) that can be passed around,
serialized as a plain dict, and called later; the base of every workflow primitive."""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any

from .._state import get_current_app
from ..result import AsyncResult, ResultBase
from ..utils import uuid

if TYPE_CHECKING:
    from ..app import Celery

# One prepared message: (TaskMessage, queue, priority), as ``app.prepare_message`` returns it.
Prepared = tuple[Any, str, int]

# The options that mark the task whose result is a workflow's result: a chain puts them on
# its last step, a chord on its body.
FINAL_MARKS = ("group_id", "group_index", "chord")

_TYPES: dict[str, type[Signature]] = {}


def register_type(name: str) -> Any:
    """Class decorator: rebuild dicts whose ``subtask_type`` is ``name`` as this class."""

    def decorate(cls: type[Signature]) -> type[Signature]:
        _TYPES[name] = cls
        return cls

    return decorate


def root_of(result: ResultBase) -> ResultBase:
    """The first result of a frozen workflow (the one whose ``parent`` is still unset)."""
    while result.parent is not None:
        result = result.parent
    return result


class Signature(dict[str, Any]):
    """Celery's signature: a dict with ``task``, ``args``, ``kwargs``, ``options``,
    ``subtask_type`` and ``immutable``, so it survives any serializer unchanged."""

    def __init__(
        self,
        task: Any = None,
        args: Any = None,
        kwargs: Any = None,
        options: Any = None,
        type: Any = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celery | None = None,
        **ex: Any,
    ) -> None:
        self._app = app
        if isinstance(task, dict):
            super().__init__(task)
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
            self._type = None
            return
        self._type = task if not isinstance(task, str) else type
        name = task if isinstance(task, str) else getattr(task, "name", None)
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options={**(options or {}), **ex},
            subtask_type=subtask_type,
            immutable=immutable,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        """Rebuild a signature (of the right kind: chain, group, chord...) from its dict."""
        kind = _TYPES.get(d.get("subtask_type") or "")
        if kind is not None and kind is not cls:
            return kind.from_dict(d, app)
        return Signature(d, app=app)

    @property
    def app(self) -> Celery:
        """The app this signature is sent with: its own, else its task's (a workflow's: its
        first task's), and the current app only when none of them says. As in Celery, a
        workflow of app A's tasks is never run by another app that happens to be current."""
        return self.bound_app() or get_current_app()

    def bound_app(self) -> Celery | None:
        """The app given to this signature or known from its task object; None if neither."""
        return self._app or getattr(self._type, "app", None)

    @property
    def name(self) -> str:
        return str(self["task"])

    @property
    def task(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> tuple[Any, ...]:
        return self["args"]  # type: ignore[no-any-return]

    @args.setter
    def args(self, value: Any) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]  # type: ignore[no-any-return]

    @kwargs.setter
    def kwargs(self, value: Any) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]  # type: ignore[no-any-return]

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    @property
    def type(self) -> Any:
        """The task object, looked up by name in the app when not given."""
        if self._type is None:
            self._type = self.app.tasks[self.task]
        return self._type

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    def _merge(
        self, args: Any = None, kwargs: Any = None, options: Any = None, force: bool = False
    ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        options = {**self.options, **(options or {})}
        if self.immutable and not force:
            return list(self.args), dict(self.kwargs), options
        return [*(args or ()), *self.args], {**self.kwargs, **(kwargs or {})}, options

    def clone(self, args: Any = None, kwargs: Any = None, **opts: Any) -> Signature:
        """A deep copy with extra arguments (prepended) and options merged in."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, opts)
        data = dict(self, args=tuple(new_args), kwargs=new_kwargs, options=new_options)
        clone = type(self).from_dict(copy.deepcopy(data), app=self._app)
        clone._type = self._type
        return clone

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Change options in place (``countdown``, ``queue``...); returns the signature."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def replace(self, args: Any = None, kwargs: Any = None, options: Any = None) -> Signature:
        """A copy with ``args``, ``kwargs`` or ``options`` replaced (not merged)."""
        clone = self.clone()
        if args is not None:
            clone["args"] = tuple(args)
        if kwargs is not None:
            clone["kwargs"] = dict(kwargs)
        if options is not None:
            clone["options"] = dict(options)
        return clone

    def link(self, callback: Signature) -> Signature:
        """Call ``callback`` with this task's result when it succeeds."""
        return self._append_to_list_option("link", callback)

    def link_error(self, errback: Signature) -> Signature:
        """Call ``errback`` when this task fails."""
        return self._append_to_list_option("link_error", errback)

    def _append_to_list_option(self, key: str, value: Signature) -> Signature:
        # The option may hold one signature (``.set(link_error=sig)``), as in Celery.
        items = self.options.get(key)
        if items is None:
            items = self.options[key] = []
        elif not isinstance(items, list):
            items = self.options[key] = [*items] if isinstance(items, tuple) else [items]
        items.append(value)
        return value

    def on_error(self, errback: Signature) -> Signature:
        """``link_error`` that returns this signature, not the errback, so it chains:
        ``add.s(2, 2).on_error(errback.s()).delay()``."""
        self.link_error(errback)
        return self

    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> Any:
        """Stamp this signature and all it runs with a ``StampingVisitor`` and/or headers."""
        from .stamping import stamp

        return stamp(self, visitor, append_stamps, **headers)

    def stamp_links(self, visitor: Any = None, append_stamps: bool = False,
                    **headers: Any) -> None:  # fmt: skip
        """Stamp this signature's callbacks and errbacks only."""
        from .stamping import stamp_links

        stamp_links(self, visitor, append_stamps, **headers)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultBase:
        """Fix the task id (and workflow marks) now, and return the result it will have."""
        opts = self.options
        task_id = _id or opts.get("task_id") or uuid()
        opts["task_id"] = task_id
        for key, value in (
            ("group_id", group_id),
            ("chord", chord),
            ("root_id", root_id),
            ("parent_id", parent_id),
            ("group_index", group_index),
        ):
            if value is not None:
                opts[key] = value
        return AsyncResult(task_id, task_name=self.task, app=self.app)

    def prepare(
        self, args: Any, kwargs: Any, options: dict[str, Any], out: list[Prepared]
    ) -> ResultBase:
        """Build this call's message(s) into ``out`` without sending them, so a group of
        any size (and any nesting) goes out in one pipelined publish."""
        app = self.app
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        task = app.tasks.get(self.task)
        if task is not None and task.typing:
            task.check_arguments(new_args, new_kwargs)
        out.append(app.prepare_message(self.task, new_args, new_kwargs, task, **opts))
        return AsyncResult(out[-1][0].id, task_name=self.task, app=app)

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        if self._type is None and self.task not in self.app.tasks:
            return self.app.send_task(self.task, new_args, new_kwargs, **new_options)
        return self.type.apply_async(new_args, new_kwargs, **new_options)

    async def aapply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """:meth:`apply_async` for asyncio code (a task, chain, group or chord alike): the
        same messages, published without blocking the event loop."""
        send = functools.partial(self.apply_async, args, kwargs, **options)
        return send() if self.app.conf.task_always_eager else await self.app.aio.send(send)

    async def adelay(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`delay` for asyncio code."""
        return await self.aapply_async(args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Run here and now (eagerly), returning an ``EagerResult``."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        return self.type.apply(new_args, new_kwargs, **new_options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        new_args, new_kwargs, _ = self._merge(args, kwargs)
        return self.type(*new_args, **new_kwargs)

    def __invert__(self) -> Any:
        """``~sig``: send it and wait for its result."""
        return self.apply_async().get()

    def __or__(self, other: Any) -> Any:
        """``a | b``: a chain (``group | task`` is a chord, see ``group``)."""
        if isinstance(other, Signature):
            return _TYPES["chain"](self, other, app=self._app)
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its dict (rebuilt by kind), never with the app or task it points at.
        return (_rebuild, (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        clone = type(self).from_dict(copy.deepcopy(dict(self), memo), app=self._app)
        clone._type = self._type
        return clone

    def __repr__(self) -> str:
        args = ", ".join(
            [*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        )
        return f"{self.task}({args}){'' if not self.immutable else ' (immutable)'}"


def _rebuild(d: dict[str, Any]) -> Signature:
    return Signature.from_dict(d)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Build a signature from a task name, a task, or a serialized signature dict (a copy
    when given a signature, as Celery does)."""
    app = kwargs.get("app")
    if isinstance(varies, dict):
        if isinstance(varies, Signature):
            return varies.clone()
        return Signature.from_dict(varies, app=app)
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(d: Any, app: Celery | None = None, clone: bool = False) -> Any:
    """A signature for ``d`` (a signature or its dict); None stays None."""
    if d is None:
        return None
    if isinstance(d, Signature):
        d = d.clone() if clone else d
    elif isinstance(d, dict):
        d = Signature.from_dict(d, app=app)
    if app is not None and isinstance(d, Signature):
        d._app = app
    return d
