"""``group``: signatures run in parallel, their results gathered in a ``GroupResult``.

All the group's messages are built first and published together, in one pipelined round
of Redis commands, however many there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._state import current_request
from ..result import GroupResult, ResultBase
from ..utils import uuid
from .lazy import LazyTasks, with_last
from .signature import _TYPES, Prepared, Signature, maybe_signature, register_type

if TYPE_CHECKING:
    from ..app import Celery

# Options a group hands to no member: it deals with them itself.
_OWN = ("task_id", "link", "link_error", "chain", "chord", "group_id", "group_index")


def _unroll(tasks: Iterable[Any], app: Celery | None) -> list[Signature]:
    """Members as signatures, with nested groups' members taken in (run in parallel
    anyway) so a group's parts are always single workflows, and empty chains left out
    (they run nothing and have no result). A generator stays unread (see ``LazyTasks``)."""
    if isinstance(tasks, (list, tuple)) and not (isinstance(tasks, LazyTasks) and tasks.pending):
        return list(_members(tasks, app))
    return LazyTasks(_members(tasks, app))


def _members(tasks: Iterable[Any], app: Celery | None) -> Iterator[Signature]:
    for task in tasks:
        # A task object stands for its signature with no arguments (``chord([tsum], ...)``).
        sig: Any = (
            maybe_signature(task, app) if isinstance(task, dict) else Signature(task, app=app)
        )
        if sig.subtask_type == "group" and not sig.args:
            inner = {k: v for k, v in sig.options.items() if k not in _OWN}
            for member in sig.tasks:
                member.options.update({k: v for k, v in inner.items() if k not in member.options})
                yield member
        elif sig.subtask_type != "chain" or sig.tasks:
            yield sig


@register_type("group")
class group(Signature):
    """``group(add.s(i, i) for i in range(10))``: run the tasks in parallel."""

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        source: Iterable[Any] = tasks
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            source = tasks[0]
        members = _unroll(source, app)
        super().__init__("celery.group", (), {"tasks": members}, options, app=app)
        self["subtask_type"] = "group"

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        sig = cls(d["kwargs"]["tasks"], app=app, **d.get("options", {}))
        sig["args"] = tuple(d.get("args") or ())
        sig["immutable"] = bool(d.get("immutable"))
        return sig

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]  # type: ignore[no-any-return]

    def bound_app(self) -> Celery | None:
        """Its own app, else its first task's (Celery's rule)."""
        own = super().bound_app()
        first = next(iter(self.tasks), None) if own is None else None  # reads one at most
        return first.bound_app() if first is not None else own

    def __length_hint__(self) -> int:
        # Not ``__len__``: a group is a dict, and serializers (msgpack) size it with len().
        return len(self.tasks)

    def __or__(self, other: Any) -> Any:
        if isinstance(other, group) and isinstance(other.tasks, list) and not other.tasks:
            return self  # an empty group runs nothing
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
        # Marks of an enclosing chord (this whole group is one of its parts) stay on the
        # group: its members count in the group's own chord, see ``_prepare_part``.
        marks = {"group_id": group_id, "group_index": group_index, "chord": chord}
        self.options.update({key: value for key, value in marks.items() if value is not None})
        results = [
            task.freeze(None, gid, None, root_id, parent_id, index)
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
            # The id this group was frozen with names the header's results, never the body.
            header = group(self.tasks, app=self._app, task_id=opts.pop("task_id", None))
            return _TYPES["chord"](header, body, app=self._app).prepare(args, kwargs, opts, out)
        if opts.get("chord") is not None and opts.get("group_index") is not None:
            return self._prepare_part(args, kwargs, opts, out)
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
        if chord is not None and isinstance(self.tasks, LazyTasks) and self.tasks.pending:
            results = self._send_lazily(args, kwargs, {**opts, "group_id": gid}, chord, out)
            return GroupResult(gid, results, app=self.app)
        results = []
        for index, task in enumerate(self.tasks):
            member = {**opts, "group_id": gid, "group_index": index}
            if chord is not None:
                member["chord"] = chord
            if errbacks is not None:
                member["link_error"] = _as_list(errbacks)
            results.append(task.prepare(args, kwargs, member, out))
        return GroupResult(gid, results, app=self.app)

    def _prepare_part(
        self, args: Any, kwargs: Any, opts: dict[str, Any], out: list[Prepared]
    ) -> ResultBase:
        """This group is one part of an enclosing chord (it ends a chain in its header, or
        is a chord's body there): its results are gathered by a chord of its own, whose
        body hands the list on as that one part, so the enclosing body gets ``[[a, b]]``
        where Celery gives it."""
        header = group(self.tasks, app=self._app, task_id=opts.pop("task_id", None) or uuid())
        collect = Signature("celery.accumulate", kwargs={"index": 0}, app=self._app)
        result = _TYPES["chord"](header, collect, app=self._app).prepare(args, kwargs, opts, out)
        assert result.parent is not None
        return result.parent  # the group's own result, as frozen

    def _send_lazily(
        self, args: Any, kwargs: Any, opts: dict[str, Any], chord: Any, out: list[Prepared]
    ) -> list[ResultBase]:
        """A chord header read from a generator is published one member at a time as it
        yields them (as Celery does: the generator may wait on the header's progress); a
        plain group is read whole and published in one round. The chord's size is not
        known until the last: the earlier members carry a size of 0 ("told by the last
        part") and the last one the real size."""
        results = []
        for index, (task, last) in enumerate(with_last(self.tasks)):
            member = {**opts, "group_index": index}
            member["chord"] = {**chord, "chord_size": index + 1 if last else 0}
            results.append(task.prepare(args, kwargs, member, out))
            if not last:
                self.app.publish_many(out)
                out.clear()
        return results

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
        result = send_prepared(sig, args, kwargs, options)
        # As in Celery: the result of ``group(a | group(b, c))`` is the inner group's.
        if isinstance(result, GroupResult) and len(result.results) == 1:
            inner = result.results[0]
            return inner if isinstance(inner, GroupResult) else result
        return result

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
