"""``Task.replace()`` and ``Task.add_to_chord()``: the signature that takes a running task's
place in its workflow, and the one that joins the chord a running task belongs to.

A replacement inherits the task's id (so every result already handed out is filled by it),
its links and errbacks, its place in a group or chord header and the rest of its chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..exceptions import Ignore, ImproperlyConfigured
from .chain import _chain
from .group import group
from .signature import Signature, maybe_signature

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context

#: The builtin task a group is chained with when it replaces a task: a group has no single
#: result (nor a place for links), a chord of it with this body does.
ACCUMULATE = "celery.accumulate"


class _RunningTask(Protocol):
    """What the methods below need of the task they are methods of."""

    @property
    def app(self) -> Celery: ...

    @property
    def request(self) -> Context: ...

    @property
    def backend(self) -> Any: ...

    def on_replace(self, sig: Signature) -> Any: ...


class WorkflowMethods:
    """The methods of ``Task`` that change the workflow a running task is part of."""

    def replace(self: _RunningTask, sig: Signature) -> Any:
        """End this task and run ``sig`` in its place: with its id (results already handed
        out are filled by ``sig``'s), its links, its place in a group or chord and the rest
        of its chain. In a worker this raises ``Ignore`` (write ``return self.replace(...)``
        or ``raise self.replace(...)``); in eager mode it returns the replacement's value."""
        return self.on_replace(replacement(self.app, self.request, sig))

    def on_replace(self: _RunningTask, sig: Signature) -> Any:
        """Start the replacement ``sig`` (override to change it, then call this one)."""
        if self.request.is_eager:
            return sig.apply().get()
        sig.delay()
        raise Ignore("Replaced by new task")

    def add_to_chord(self: _RunningTask, sig: Signature, lazy: bool = False) -> Any:
        """Make ``sig`` one more part of the chord this task is part of: the chord's body
        waits for it too and gets its result after those of the header. Sent at once
        unless ``lazy`` (then call ``sig.delay()``); returns its result (or ``sig``)."""
        request = self.request
        chord_member(request, sig)
        added = self.backend.add_to_chord(request.group)
        sig.set(group_index=chord_size(request) + int(added) - 1)
        sig.freeze()
        return sig if lazy else sig.delay()


def replacement(app: Celery, request: Context, sig: Signature) -> Signature:
    """``sig`` made ready to run in place of the task of ``request`` (as Celery's
    ``Task.replace``): ready to be sent, with the rest of the task's chain appended."""
    if "chord" in sig.options:
        raise ImproperlyConfigured("A signature replacing a task must not be part of a chord")
    if isinstance(sig, _chain) and not sig.tasks:
        raise ImproperlyConfigured("Cannot replace with an empty chain")
    sig = _with_single_result(app, sig)
    for callback in _as_list(request.callbacks):
        sig.link(maybe_signature(callback, app))
    for errback in _as_list(request.errbacks):
        sig.link_error(maybe_signature(errback, app))
    sig.freeze(request.id)
    nesting = int(request.get("replaced_task_nesting") or 0) + 1
    marks = {
        "chord": request.chord,
        "group_id": request.group,
        "group_index": request.group_index,
        "root_id": request.root_id,
        # The task's own parent (not the task itself, as a send from inside it would say).
        "parent_id": request.parent_id,
    }
    sig.set(**_given(marks), replaced_task_nesting=nesting)
    if isinstance(sig, _chain):
        for step in sig.tasks:
            step.set(replaced_task_nesting=nesting)
    following = [maybe_signature(step, app, clone=True) for step in reversed(request.chain or ())]
    if not following:
        return sig
    for step in following:
        step.set(replaced_task_nesting=nesting)
    # The rest of the chain keeps its workflow's root, as the replacement does.
    return _chain(sig, *following, app=app, **_given({"root_id": request.root_id}))


def _with_single_result(app: Celery, sig: Signature) -> Signature:
    """A group (alone or ending a chain) becomes a chord gathering its results, so the
    replacement has one result to store under the task's id and to pass on."""
    accumulate = app.tasks[ACCUMULATE].s(index=0)
    if isinstance(sig, group):
        return sig | accumulate  # type: ignore[no-any-return]
    if isinstance(sig, _chain) and isinstance(sig.tasks[-1], group):
        steps = list(sig.tasks)
        steps[-1] = steps[-1] | accumulate
        return _chain(*steps, app=sig._app, **sig.options)
    return sig


def chord_member(request: Context, sig: Signature) -> Signature:
    """``sig`` marked as one more part of the chord of ``request`` (``add_to_chord``); the
    caller gives it its header index once the backend has counted it."""
    if not request.chord:
        raise ValueError("Current task is not member of any chord")
    sig.set(group_id=request.group, chord=request.chord, root_id=request.root_id)
    return sig


def chord_size(request: Context) -> int:
    """The number of header tasks the chord of ``request`` was started with."""
    return int((request.chord or {}).get("chord_size") or 0)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
