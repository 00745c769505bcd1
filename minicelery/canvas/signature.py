"""``Signature``: a task call (name, args, kwargs, options) that can be passed around,
serialized as a plain dict, and called later."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .._state import get_current_app

if TYPE_CHECKING:
    from ..app import Celery
    from ..result import AsyncResult


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
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options={**(options or {}), **ex},
            subtask_type=subtask_type,
            immutable=immutable,
        )

    @property
    def app(self) -> Celery:
        return self._app or getattr(self._type, "app", None) or get_current_app()

    @property
    def task(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> list[Any]:
        return self["args"]  # type: ignore[no-any-return]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]  # type: ignore[no-any-return]

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]  # type: ignore[no-any-return]

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
        """A copy with extra arguments (prepended) and options merged in."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, opts)
        clone = type(self)(
            dict(self, args=new_args, kwargs=new_kwargs, options=copy.deepcopy(new_options)),
            app=self._app,
        )
        clone._type = self._type
        return clone

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def replace(self, args: Any = None, kwargs: Any = None, options: Any = None) -> Signature:
        clone = self.clone()
        if args is not None:
            clone["args"] = list(args)
        if kwargs is not None:
            clone["kwargs"] = dict(kwargs)
        if options is not None:
            clone["options"] = dict(options)
        return clone

    def link(self, callback: Signature) -> Signature:
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        self.options.setdefault("link_error", []).append(errback)
        return errback

    on_error = link_error

    def apply_async(
        self, args: Any = None, kwargs: Any = None, route_name: Any = None, **options: Any
    ) -> AsyncResult:
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        if self._type is None and self.task not in self.app.tasks:
            return self.app.send_task(self.task, new_args, new_kwargs, **new_options)
        return self.type.apply_async(new_args, new_kwargs, **new_options)  # type: ignore[no-any-return]

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        return self.type.apply(new_args, new_kwargs, **new_options)  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        new_args, new_kwargs, _ = self._merge(args, kwargs)
        return self.type(*new_args, **new_kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        clone = type(self)(copy.deepcopy(dict(self), memo), app=self._app)
        clone._type = self._type
        return clone

    def __repr__(self) -> str:
        args = ", ".join(
            [*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        )
        return f"{self.task}({args}){'' if not self.immutable else ' (immutable)'}"


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Build a signature from a task name, a task, or a serialized signature dict."""
    if isinstance(varies, dict) and not args and not kwargs:
        return varies if isinstance(varies, Signature) else Signature(varies)
    return Signature(varies, *args, **kwargs)


subtask = signature
maybe_signature = signature
