"""``chain``: tasks run one after the other, each given the previous one's result.

Only the first task is sent; the others travel in its message (``chain``, last step first)
and each worker sends the next step when its task succeeds, so no client has to wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..result import ResultBase
from .group import send_prepared
from .lazy import LazyTasks
from .signature import (
    _TYPES,
    FINAL_MARKS,
    Prepared,
    Signature,
    maybe_signature,
    register_type,
    root_of,
)

if TYPE_CHECKING:
    from ..app import Celery


def _steps_of(tasks: tuple[Any, ...]) -> list[Any]:
    if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
        return list(tasks[0])
    return list(tasks)


def normalize(steps: list[Signature], app: Celery | None) -> list[Signature]:
    """Flatten nested chains, drop the steps that run nothing (empty groups and chains:
    a chain of empty groups only keeps one, for its empty result), take a one-task group
    as that task, and turn a group followed by another step into a chord with that step as
    its body (as Celery does: ``group | task`` is a chord)."""
    out: list[Signature] = []
    skipped: Signature | None = None
    for step in steps:
        sig: Any = _simplified(maybe_signature(step, app))
        if sig.subtask_type == "chain" and not sig.args and not _own_options(sig):
            out.extend(normalize(list(sig.tasks), app))
        elif _is_empty_group(sig):
            skipped = sig
        elif out and out[-1].subtask_type == "group":
            out[-1] = _chord(out[-1], sig, app)
        else:
            out.append(sig)
    if not out and skipped is not None:
        out.append(skipped)
    return out


def _simplified(sig: Signature) -> Signature:
    """A one-task group is that task (Celery unrolls it): its result is the task's."""
    if sig.subtask_type != "group" or sig.args:
        return sig
    tasks = sig.tasks  # type: ignore[attr-defined]
    if isinstance(tasks, LazyTasks) and tasks.pending:
        return sig  # a generator is never read to decide this
    return tasks[0] if len(tasks) == 1 else sig


def _is_empty_group(sig: Signature) -> bool:
    return sig.subtask_type == "group" and not sig.tasks  # type: ignore[attr-defined]


def _own_options(sig: Signature) -> bool:
    return any(key not in ("task_id", "root_id", "parent_id") for key in sig.options)


def _chord(header: Signature, body: Signature, app: Celery | None) -> Signature:
    return _TYPES["chord"](header, body, app=app)


@register_type("chain")
class _chain(Signature):
    """``chain(a.s(), b.s(), c.s())`` or ``a.s() | b.s() | c.s()``."""

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        steps = normalize(_steps_of(tasks), app)
        super().__init__("celery.chain", (), {"tasks": steps}, options, app=app)
        self["subtask_type"] = "chain"

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Celery | None = None) -> Signature:
        sig = cls(*d["kwargs"]["tasks"], app=app, **d.get("options", {}))
        sig["args"] = tuple(d.get("args") or ())
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

    def __or__(self, other: Any) -> Any:
        if isinstance(other, Signature):
            return _chain(*self.tasks, other, app=self._app, **self.options)
        return NotImplemented

    def link(self, callback: Signature) -> Signature:
        return self.tasks[-1].link(callback)

    def link_error(self, errback: Signature) -> Signature:
        for task in self.tasks:
            task.link_error(errback)
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
        """Fix every step's id; the result is the last step's, ``parent`` leading back.
        The chain's own id (``chain(..., task_id=...)``) is its last step's, and once
        frozen ``chain.id`` is that id, as in Celery."""
        previous: ResultBase | None = None
        _id = _id or self.options.get("task_id")
        steps = self.tasks
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            result = step.freeze(
                _id if last else None,
                group_id if last else None,
                chord if last else None,
                root_id,
                None,
                group_index if last else None,
            )
            if root_id is None:
                root_id = step.id or getattr(result, "id", None)
            if previous is not None:
                root_of(result).parent = previous
            previous = result
        assert previous is not None, "an empty chain has no result"
        self.options["task_id"] = getattr(previous, "id", None)
        return previous

    def _split(self, args: Any, kwargs: Any, options: dict[str, Any]) -> tuple[Any, ...]:
        """Steps (with any chain still to follow this one appended), the options for the
        last step and the options for the first."""
        opts = {**self.options, **options}
        steps = [step.clone() for step in self.tasks]
        following = opts.pop("chain", None) or []
        if following:
            steps = normalize([*steps, *reversed(following)], self._app)
            # This chain's own id is its last step's (set there when frozen), and that
            # step no longer ends the workflow: the enclosing chain's last one does.
            opts.pop("task_id", None)
        final = {key: opts.pop(key) for key in (*FINAL_MARKS, "task_id") if key in opts}
        link, link_error = opts.pop("link", None), opts.pop("link_error", None)
        if link is not None:
            for callback in link if isinstance(link, list) else [link]:
                steps[-1].link(maybe_signature(callback, self._app))
        if link_error is not None:
            for errback in link_error if isinstance(link_error, list) else [link_error]:
                for step in steps:
                    step.link_error(maybe_signature(errback, self._app))
        if not self.immutable:
            args = [*(args or ()), *self.args]
        return steps, final, opts, args, kwargs

    def prepare(
        self, args: Any, kwargs: Any, options: dict[str, Any], out: list[Prepared]
    ) -> ResultBase:
        steps, final, opts, args, kwargs = self._split(args, kwargs, options)
        if not steps:
            raise ValueError("cannot send an empty chain")
        result = _chain(*steps, app=self._app).freeze(
            final.get("task_id"),
            final.get("group_id"),
            final.get("chord"),
            opts.get("root_id"),
            None,
            final.get("group_index"),
        )
        first, rest = steps[0], steps[1:]
        if rest:
            opts["chain"] = [dict(step) for step in reversed(rest)]
        first.prepare(args, kwargs, opts, out)
        return result

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> Any:
        if not self.tasks and not options.get("chain"):
            return None  # an empty chain sends nothing and has no result (as in Celery)
        return send_prepared(self, args, kwargs, options)

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Run every step here, in order (eager mode)."""
        steps, _, opts, args, kwargs = self._split(args, kwargs, options)
        result: Any = None
        for index, step in enumerate(steps):
            step_args = (args, kwargs) if index == 0 else ((result.get(),), {})
            previous = result
            result = step.apply(*step_args, **(opts if index == 0 else {}))
            if previous is not None:
                root_of(result).parent = previous
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks) or "chain()"


chain = _chain
