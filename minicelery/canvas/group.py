"""``group``: signatures run in parallel, their results gathered in a ``GroupResult``.

All the group's messages are built first and published together, in one pipelined round
of Redis commands, however many there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._state import current_request
from ..result import GroupResult, ResultBase
from ..utils import uuid
from .signature import _TYPES, Prepared, Signature, maybe_signature, register_type

if TYPE_CHECKING:
    from ..app import Celery

# Options a group hands to no member: it deals with them itself.
_OWN = ("task_id", "link", "link_error", "chain", "chord", "group_id", "group_index")


def _unroll(tasks: Iterable[Any], app: Celery | None) -> list[Signature]:
    """Members as signatures, with nested groups' members taken in (run in parallel
    anyway) so a group's parts are always single workflows."""
    out: list[Signature] = []
    for task in tasks:
        sig = maybe_signature(task, app)
        if sig.subtask_type == "group" and not sig.args:
            inner = {k: v for k, v in sig.options.items() if k not in _OWN}
            for member in sig.tasks:
                member.options.update({k: v for k, v in inner.items() if k not in member.options})
                out.append(member)
        else:
            out.append(sig)
    return out


@register_type("group")
class group(Signature):
    """``group(add.s(i, i) for i in range(10))``: run the tasks in parallel."""

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        members = _unroll(tasks, app)
        super().__init__("celery.group", (), {"tasks": members}, options, app=app)
        self["subtask_type"] = "group"

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        sig = cls(d["kwargs"]["tasks"], app=app, **d.get("options", {}))
        sig["args"] = list(d.get("args") or ())
        sig["immutable"] = bool(d.get("immutable"))
        return sig

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]  # type: ignore[no-any-return]

    def bound_app(self) -> Celery | None:
        """Its own app, else its first task's (Celery's rule)."""
        own = super().bound_app()
        if own is None and self.tasks:
            return self.tasks[0].bound_app()
        return own

    def __length_hint__(self) -> int:
        # Not ``__len__``: a group is a dict, and serializers (msgpack) size it with len().
        return len(self.tasks)

    def __or__(self, other: Any) -> Any:
        if isinstance(other, Signature):
            return _TYPES["chord"](self, other, app=self._app)
        return NotImplemented

    def link(self, callback: Signature) -> Signature:
        """As in Celery: linked to the first task only, made immutable (a group has no
        single result to pass on)."""
        callback = callback.clone().set(immutable=True)
        return self.tasks[0].link(callback) if self.tasks else callback

    def link_error(self, errback: Signature) -> Signature:
        """The errback is called for each failing task (with its id, when old-style)."""
        for task in self.tasks:
            task.link_error(errback.clone())
        return errback

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Spread the tasks out in time: countdowns ``start``, ``start + step``, ..."""
        countdown = start
        for task in self.tasks:
            task.set(countdown=countdown)
            countdown += step
            if stop is not None and countdown > stop:
                countdown = start
        return self

    def _group_id(self, group_id: str | None = None) -> str:
        gid = group_id or self.options.get("task_id") or uuid()
        self.options["task_id"] = gid
        return str(gid)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultBase:
        gid = self._group_id(_id)
        results = [
            task.freeze(None, gid, chord, root_id, parent_id, index)
            for index, task in enumerate(self.tasks)
        ]
        return GroupResult(gid, results, app=self.app)

    def prepare(
        self, args: Any, kwargs: Any, options: dict[str, Any], out: list[Prepared]
    ) -> ResultBase:
        opts = {**self.options, **options}
        if opts.get("chain"):
            # A group followed by more steps is a chord whose body is the next step.
            following = list(opts.pop("chain"))
            body = maybe_signature(following.pop(), self._app)
            if following:
                body.options["chain"] = following
            header = group(self.tasks, app=self._app)
            return _TYPES["chord"](header, body, app=self._app).prepare(args, kwargs, opts, out)
        # The id it was frozen with (in its options), else a new one for this send only.
        gid = str(opts.pop("task_id", None) or opts.pop("group_id", None) or uuid())
        chord = opts.pop("chord", None)
        # The group's own ``link_error`` (``.set(link_error=...)``) replaces its tasks'
        # errbacks, as when Celery passes the group's options on to each task.
        errbacks = opts.pop("link_error", None)
        for key in _OWN:
            opts.pop(key, None)
        if not self.immutable:
            args = [*(args or ()), *self.args]
        results = []
        for index, task in enumerate(self.tasks):
            member = {**opts, "group_id": gid, "group_index": index}
            if chord is not None:
                member["chord"] = chord
            if errbacks is not None:
                member["link_error"] = _as_list(errbacks)
            results.append(task.prepare(args, kwargs, member, out))
        return GroupResult(gid, results, app=self.app)

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        link, link_error = options.pop("link", None), options.pop("link_error", None)
        sig: group = self
        if link is not None or link_error is not None:
            sig = self.clone()  # type: ignore[assignment]
            for callback in _as_list(link):
                sig.link(maybe_signature(callback, app))
            for errback in _as_list(link_error):
                sig.link_error(maybe_signature(errback, app))
        return send_prepared(sig, args, kwargs, options)

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Run every member here, in order (eager mode)."""
        if not self.immutable:
            args = [*(args or ()), *self.args]
        gid = self._group_id(options.pop("task_id", None))
        results = [task.apply(args, kwargs, **options) for task in self.tasks]
        return GroupResult(gid, results, app=self.app)

    def __call__(self, *partial_args: Any, **options: Any) -> Any:
        return self.apply_async(partial_args, **options)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(task) for task in self.tasks)}])"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def send_prepared(sig: Signature, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
    """Build every message of the workflow ``sig``, publish them in one pipelined round, and
    return its result (recorded as a child when sent from inside a task); in eager mode,
    run it here instead."""
    if sig.app.conf.task_always_eager:
        return sig.apply(args, kwargs, **options)
    out: list[Prepared] = []
    result = sig.prepare(args, kwargs, options, out)
    sig.app.publish_many(out)
    add_to_parent(result)
    return result


def add_to_parent(result: ResultBase) -> None:
    """A group sent from inside a task is one of that task's children (``collect()``)."""
    request = current_request()
    if request is not None and not request.called_directly:
        children = request.__dict__.setdefault("children", [])
        children.append(result)
