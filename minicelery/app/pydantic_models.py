"""``@app.task(pydantic=True)``: arguments annotated with a pydantic model arrive as that
model (validated from what the message carried), a returned model is stored as its JSON
dump, and models a caller passes are dumped before they are sent, as in Celery.

pydantic is imported only when such a task is defined; it is not a dependency otherwise.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import ImproperlyConfigured

if typing.TYPE_CHECKING:
    from .base import Celery

_UNIONS: tuple[Any, ...] = (typing.Union, types.UnionType)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def task_options(app: Celery, fun: Callable[..., Any], name: str, bind: bool,
                 options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Take the pydantic options out of a task's ``options``; with ``pydantic=True``, the
    class attributes that make it validate and dump (its ``run`` and the dumper the
    calling API uses)."""
    enabled = options.pop("pydantic", False)
    strict = bool(options.pop("pydantic_strict", False))
    context = options.pop("pydantic_context", None) or {}
    dump_kwargs = {"mode": "json", **(options.pop("pydantic_dump_kwargs", None) or {})}
    if enabled is not True:
        return {}
    models = _Models(app, fun, name, strict, context, dump_kwargs)
    wrapper = models.wrap()
    return {
        "run": wrapper if bind else staticmethod(wrapper),
        "_dump_pydantic_arguments": staticmethod(functools.partial(models.dump, bound=bind)),
    }


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``; None for anything else."""
    if typing.get_origin(annotation) not in _UNIONS:
        return None
    members = typing.get_args(annotation)
    if len(members) != 2 or type(None) not in members:
        return None
    return next(member for member in members if member is not type(None))


class _Models:
    """The models of one task function: which parameter takes which model, and the calls
    that validate, dump and rebuild them."""

    def __init__(self, app: Celery, fun: Callable[..., Any], name: str, strict: bool,
                 context: Mapping[str, Any], dump_kwargs: dict[str, Any]) -> None:  # fmt: skip
        try:
            pydantic = importlib.import_module("pydantic")
        except ModuleNotFoundError as exc:
            raise ImproperlyConfigured(
                "You need to install pydantic to use pydantic model serialization."
            ) from exc
        self.base: Any = pydantic.BaseModel
        self.fun, self.strict, self.dump_kwargs = fun, strict, dump_kwargs
        self.context = {**context, "celery_app": app, "celery_task_name": name}
        self.signature = inspect.signature(fun)
        self._hints: dict[str, Any] | None = None

    @property
    def hints(self) -> dict[str, Any]:
        """The resolved annotations (string ones too), read on first use so a model defined
        after the task in its module is found; the raw ones when they cannot be resolved."""
        if self._hints is None:
            try:
                self._hints = typing.get_type_hints(self.fun)
            except (NameError, AttributeError, TypeError):
                self._hints = {n: p.annotation for n, p in self.signature.parameters.items()}
                self._hints["return"] = self.signature.return_annotation
        return self._hints

    def _model(self, annotation: Any, value: Any) -> type[Any] | None:
        optional = _optional_of(annotation)
        if optional is not None and value is not None:
            annotation = optional
        if inspect.isclass(annotation) and issubclass(annotation, self.base):
            return annotation
        return None

    def model_for(self, name: str, value: Any) -> type[Any] | None:
        return self._model(self.hints.get(name, inspect.Parameter.empty), value)

    def validate(self, model: type[Any], value: Any) -> Any:
        return model.model_validate(value, strict=self.strict, context=self.context)

    def wrap(self) -> Callable[..., Any]:
        @functools.wraps(self.fun)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = self.signature.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                model = self.model_for(name, value)
                if model is not None:
                    bound.arguments[name] = self.validate(model, value)
            return self.dumped(self.fun(*bound.args, **bound.kwargs))

        return run

    def dumped(self, value: Any) -> Any:
        """A returned model as its JSON-ready dump, when it is what the task declares."""
        annotation = self.hints.get("return", inspect.Parameter.empty)
        annotation = _optional_of(annotation) or annotation
        declared = inspect.isclass(annotation) and isinstance(value, annotation)
        if declared and isinstance(value, self.base):
            return value.model_dump(**self.dump_kwargs)
        return value

    def _dump_one(self, name: str | None, value: Any) -> Any:
        """A model the caller passed, as its dump, when the worker will rebuild an equal
        model from it; anything else as it is, for the serializer to judge."""
        if name is None or not isinstance(value, self.base):
            return value
        model = self.model_for(name, value)
        if model is None:
            return value
        try:
            dumped = value.model_dump(**self.dump_kwargs)
            if self.validate(model, dumped) == value:
                return dumped
        except Exception:  # a model's own serializers may only work on a worker
            return value
        return value

    def dump(self, args: Any, kwargs: Any, bound: bool = False) -> tuple[Any, Any]:
        """``(args, kwargs)`` with the caller's models dumped (``apply_async``)."""
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
            return args, kwargs
        if not any(isinstance(v, self.base) for v in (*args, *kwargs.values())):
            return args, kwargs
        try:
            self.signature.bind(*([None] if bound else []), *args, **kwargs)
        except TypeError:
            return args, kwargs  # the argument check reports it
        parameters = self.signature.parameters.values()
        names = [p.name for p in parameters if p.kind in _POSITIONAL][1 if bound else 0 :]
        named = {p.name for p in parameters if p.kind in _NAMED}
        new_args = [
            self._dump_one(names[i] if i < len(names) else None, value)
            for i, value in enumerate(args)
        ]
        new_kwargs = {k: self._dump_one(k if k in named else None, v) for k, v in kwargs.items()}
        return type(args)(new_args), new_kwargs


__all__ = ["task_options"]
