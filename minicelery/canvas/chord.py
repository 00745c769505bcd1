"""``chord``: a group (the header) whose results, in order, are passed to one more task
(the body) once every header task has finished.

Each header message carries the body; the worker that finishes a header task records its
result in Redis with one atomic script, and the one that completes the set publishes the
body (see :mod:`minicelery.canvas.callbacks`). Nothing polls and no client waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..result import GroupResult, ResultBase
from .errbacks import link_error_to_body
from .group import group, send_prepared
from .lazy import LazyTasks
from .signature import FINAL_MARKS, Prepared, Signature, maybe_signature, register_type, root_of

if TYPE_CHECKING:
    from ..app import Celery


def _as_group(header: Any, app: Celery | None) -> group:
    if isinstance(header, group):
        return header
    if isinstance(header, dict) and header.get("subtask_type") == "group":
        return maybe_signature(header, app)  # type: ignore[no-any-return]
    if isinstance(header, Signature):
        return group([header], app=app)
    return group(header if isinstance(header, Iterable) else [header], app=app)


@register_type("chord")
class chord(Signature):
    """``chord(header, body)``: ``body`` is called with the header's results, in order."""

    def __init__(
        self,
        header: Any,
        body: Any = None,
        task: str = "celery.chord",
        args: Any = None,
        kwargs: Any = None,
        app: Celery | None = None,
        **options: Any,
    ) -> None:
        content = {
            "kwargs": dict(kwargs or {}),
            "header": _as_group(header, app),
            "body": maybe_signature(body, app),
        }
        super().__init__(task, args, content, options, app=app)
        self["subtask_type"] = "chord"

    def bound_app(self) -> Celery | None:
        """Its own app, else its body's, else its header's (Celery's rule)."""
        own = super().bound_app()
        if own is None and self.body is not None:
            own = self.body.bound_app()
        return own if own is not None else self.header.bound_app()

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        content = d["kwargs"]
        sig = cls(content["header"], content.get("body"), app=app, **d.get("options", {}))
        sig["args"] = tuple(d.get("args") or ())
        sig["immutable"] = bool(d.get("immutable"))
        return sig

    @property
    def header(self) -> group:
        return self.kwargs["header"]  # type: ignore[no-any-return]

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    @property
    def body(self) -> Signature | None:
        body: Signature | None = self.kwargs.get("body")
        return body

    @body.setter
    def body(self, value: Signature | None) -> None:
        self.kwargs["body"] = value

    def __or__(self, other: Any) -> Any:
        if isinstance(other, Signature) and self.body is not None:
            return super().__or__(other)
        if isinstance(other, Signature):  # a chord without a body takes ``other`` as body
            sig = self.clone()
            sig.kwargs["body"] = other
            return sig
        return NotImplemented

    def link(self, callback: Signature) -> Signature:
        assert self.body is not None, "a chord needs a body to link to"
        return self.body.link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Linked to the body, and to the header tasks too (immutable) with the setting
        ``task_allow_error_cb_on_chord_header``, as in Celery. (Celery also links it to the
        body of a chord in the header, since a failing inner chord leaves the outer one
        pending there; here the outer chord fails too and calls it, so it is called once.)"""
        assert self.body is not None, "a chord needs a body to link to"
        errback = maybe_signature(errback, self._app)
        if self.app.conf.task_allow_error_cb_on_chord_header:
            for task in self.header.tasks:
                task.link_error(errback.clone().set(immutable=True))
        self.body.link_error(errback)
        return errback

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultBase:
        """The body's result, whose parent is the header's ``GroupResult``."""
        assert self.body is not None, "a chord needs a body"
        body_result = self.body.freeze(_id, group_id, chord, root_id, parent_id, group_index)
        header_result = self.header.freeze(None, None, None, root_id, parent_id)
        root_of(body_result).parent = header_result
        return body_result

    def _body_for(self, body_arg: Any, opts: dict[str, Any]) -> Signature:
        """The body, carrying what belongs to the workflow's end: the id, marks of an
        enclosing chord, links and the rest of an enclosing chain."""
        given = maybe_signature(body_arg or self.body, self._app)
        if given is None:
            raise ValueError("a chord needs a body: chord(header, body) or chord(header)(body)")
        body: Signature = given.clone()
        if opts.get("chain"):
            body.options["chain"] = [*opts.pop("chain"), *body.options.get("chain", ())]
        for callback in _as_list(opts.pop("link", None)):
            body.link(maybe_signature(callback, self._app))
        for errback in _as_list(opts.pop("link_error", None)):
            link_error_to_body(body, maybe_signature(errback, self._app))
        return body

    def prepare(
        self, args: Any, kwargs: Any, options: dict[str, Any], out: list[Prepared]
    ) -> ResultBase:
        opts = {**self.options, **options}
        kwargs = dict(kwargs or {})
        body = self._body_for(kwargs.pop("body", None), opts)
        marks = {key: opts.pop(key) for key in FINAL_MARKS if key in opts}
        body_result = body.freeze(
            opts.pop("task_id", None),
            marks.get("group_id"),
            marks.get("chord"),
            opts.get("root_id"),
            None,
            marks.get("group_index"),
        )
        # A new group over the same members (never changed by sending: no deep copy needed
        # for ten thousand of them), so the chord's own header keeps no id of this send.
        header = group(self.header.tasks, app=self._app, **dict(self.header.options))
        assert isinstance(header, group)
        if header.options.get("task_id"):  # a frozen chord sent again is a new run
            self.app.backend.chord_reset(header.options["task_id"])
        if not self.immutable:
            args = [*(args or ()), *self.args]
        lazy = isinstance(header.tasks, LazyTasks) and header.tasks.pending
        # A generator's size is known once read: its group marks each member's (see there).
        body["chord_size"] = 0 if lazy else len(header.tasks)
        if not header.tasks:
            # Nothing to wait for: the body is called at once, with no results.
            header_result: ResultBase = GroupResult(header._group_id(), [], app=self.app)
            body.prepare([[]], {}, {}, out)
        else:
            header_result = header.prepare(args, kwargs, {**opts, "chord": dict(body)}, out)
        root_of(body_result).parent = header_result
        return body_result

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        return send_prepared(self, args, kwargs, options)

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Run the header, then the body, here (eager mode)."""
        kwargs = dict(kwargs or {})
        body = maybe_signature(kwargs.pop("body", None) or self.body, self._app)
        header_result = self.header.apply(args, kwargs)
        body_result = body.apply(([r.get() for r in header_result.results],), **options)
        root_of(body_result).parent = header_result
        return body_result

    def __call__(self, body: Any = None, **options: Any) -> Any:
        return self.apply_async((), {"body": body} if body is not None else {}, **options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
