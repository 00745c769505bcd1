"""``Task``: a registered function with Celery's calling API and request context."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar

from . import states
from ._state import current_request, task_stack
from .canvas.replace import WorkflowMethods
from .exceptions import MaxRetriesExceededError, Retry
from .result import AsyncResult, EagerResult
from .task_retry import send_retry
from .utils import uuid
from .utils.functional import argument_checker

if TYPE_CHECKING:
    from .app import Celery
    from .canvas.signature import Signature

P = ParamSpec("P")
R = TypeVar("R")

# Task attribute -> the setting that supplies it when the task does not say.
FROM_CONFIG = {
    "serializer": "task_serializer",
    "rate_limit": "task_default_rate_limit",
    "priority": "task_default_priority",
    "track_started": "task_track_started",
    "acks_late": "task_acks_late",
    "acks_on_failure_or_timeout": "task_acks_on_failure_or_timeout",
    "reject_on_worker_lost": "task_reject_on_worker_lost",
    "ignore_result": "task_ignore_result",
    "store_errors_even_if_ignored": "task_store_errors_even_if_ignored",
    "store_eager_result": "task_store_eager_result",
}


class Context:
    """``task.request``: everything about the current call of a task."""

    id: str | None = None
    args: Any = ()
    kwargs: Any = None
    retries: int = 0
    is_eager: bool = False
    eta: str | None = None
    expires: str | None = None
    hostname: str | None = None
    delivery_info: Any = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    correlation_id: str | None = None
    origin: str | None = None
    headers: Any = None
    reply_to: str | None = None
    callbacks: Any = None
    errbacks: Any = None
    chain: Any = None
    chord: Any = None
    timelimit: Any = None  # [hard, soft], as the message carried them
    time_limit: float | None = None
    soft_time_limit: float | None = None
    properties: Any = None  # the message's properties (``app_id``, ``priority``...)
    ignore_result: bool = False
    called_directly: bool = True
    task: str | None = None
    shadow: str | None = None
    stamped_headers: Any = None  # canvas stamping: the names of the stamps
    stamps: Any = None  # and their values
    replaced_task_nesting: int = 0  # how many replacements led to this task

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        limits = fields.get("timelimit")
        if isinstance(limits, (list, tuple)) and len(limits) == 2:
            self.time_limit, self.soft_time_limit = limits

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __repr__(self) -> str:
        return f"<Context: {vars(self)}>"


# Headers every task message has (request fields), as opposed to the caller's own.
_STANDARD_HEADERS = frozenset(Context.__annotations__) | {
    "lang", "task", "argsrepr", "kwargsrepr", "compression", "replaced_task_nesting",
}  # fmt: skip


def custom_headers(headers: dict[str, Any]) -> dict[str, Any] | None:
    """``task.request.headers`` as Celery gives it: only the headers the caller added
    (``apply_async(headers=...)``), which a retry carries on; None when there are none."""
    custom = {k: v for k, v in headers.items() if k not in _STANDARD_HEADERS}
    return custom or None


class Task(WorkflowMethods, Generic[P, R]):
    """A task: call it to run here, ``delay()``/``apply_async()`` to run it on a worker.

    Options left as None take their value from the app's settings (``task_acks_late`` ...).
    """

    name: str = ""
    app: ClassVar[Celery]
    typing: bool = True
    trail: bool = True  # record the tasks it sends as its result's children
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    queue: str | None = None
    expires: float | dt.datetime | None = None
    serializer: str | None = None
    rate_limit: str | None = None
    priority: int | None = None
    track_started: bool | None = None
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    store_eager_result: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    abstract: bool = True
    _signature_cache: Callable[..., None] | None = None
    # ``pydantic=True``: turns the models a caller passes into what the serializer sends.
    _dump_pydantic_arguments: Callable[..., tuple[Any, Any]] | None = None

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise NotImplementedError("Tasks must define the run method.")

    def option(self, attr: str) -> Any:
        """The task's own value for ``attr``, or the app-wide setting that supplies it."""
        value = getattr(self, attr)
        if value is None and attr in FROM_CONFIG:
            return self.app.conf[FROM_CONFIG[attr]]
        return value

    @property
    def request(self) -> Context:
        request = current_request()
        return request if request is not None and request.task == self.name else Context()

    @property
    def backend(self) -> Any:
        return self.app.backend

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if _traced_call.get() is self:
            # A worker or apply() entered through a subclass's __call__ which called this
            # one: the request is already current, so run the body under it.
            _traced_call.set(None)
            return _awaited(self.run(*args, **kwargs))  # type: ignore[no-any-return]
        stack = task_stack()
        stack.append(Context(args=args, kwargs=kwargs, task=self.name, called_directly=True))
        try:
            return _awaited(self.run(*args, **kwargs))  # type: ignore[no-any-return]
        finally:
            stack.pop()

    def check_arguments(self, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError now, at the call site, when the arguments do not fit."""
        check = type(self)._signature_cache  # from the class: a plain function, not bound
        if check is None:
            check = type(self)._signature_cache = argument_checker(self.run)
        try:
            check(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() {str(exc).removeprefix('check() ')}") from None

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send the task to a worker with these arguments."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task with Celery's options (countdown, eta, expires, queue, priority...)."""
        if self.soft_time_limit and self.time_limit and self.soft_time_limit > self.time_limit:
            raise ValueError("soft_time_limit must be less than or equal to time_limit")
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        if self._dump_pydantic_arguments is not None and options.get("serializer") != "pickle":
            args, kwargs = self._dump_pydantic_arguments(args, kwargs)
        if self.app.conf.task_always_eager:
            return self.apply(
                args, kwargs, task_id=task_id, link=link, link_error=link_error, **options
            )
        return self.app.send_task(
            self.name,
            args,
            kwargs,
            task_id=task_id,
            link=link,
            link_error=link_error,
            shadow=shadow,
            task=self,
            **options,
        )

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """:meth:`delay` for asyncio code: await it in a coroutine."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """:meth:`apply_async` for asyncio code: the same message and options, published
        without blocking the event loop (run here and now when ``task_always_eager``)."""
        send = functools.partial(self.apply_async, args, kwargs, **options)
        return send() if self.app.conf.task_always_eager else await self.app.aio.send(send)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        throw: bool | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here and now, returning an ``EagerResult``; ``throw`` (default:
        ``task_eager_propagates``) re-raises a failure instead."""
        from .trace import run_eager

        if throw is None:
            throw = bool(self.app.conf.task_eager_propagates)
        options["throw"] = throw
        return run_eager(
            self, tuple(args or ()), dict(kwargs or {}), task_id or uuid(), options
        )

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(task_id, task_name=self.name, app=self.app, **kwargs)

    def signature(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *starargs: Any,
        **options: Any,
    ) -> Signature:
        from .canvas.signature import Signature

        return Signature(self, args, kwargs, options, app=self.app)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A partial signature: ``add.s(2)`` later called with ``4`` runs ``add(4, 2)``."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it ignores the result of a previous task."""
        sig = self.signature(args, kwargs)
        sig["immutable"] = True
        return sig

    def map(self, it: Iterable[Any]) -> Signature:
        """One task applying this one to each item: ``[task(x) for x in it]``."""
        from .canvas.mapping import xmap

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Any]) -> Signature:
        """One task applying this one to each tuple of arguments: ``[task(*x) for x in it]``."""
        from .canvas.mapping import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Any], n: int) -> Signature:
        """The items split into parts of ``n``, each part one starmap task, run as a group."""
        from .canvas.mapping import chunks

        return chunks(self.s(), it, n, app=self.app)

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Send this task again later and raise ``Retry`` (or the max-retries error)."""
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            raise exc if exc is not None else Retry("Task can be retried", None)
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] "
                f"args:{request.args} kwargs:{request.kwargs}",
                task_args=request.args,
                task_kwargs=request.kwargs,
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        delay_options = {"eta": eta} if eta is not None else {"countdown": countdown}
        eager = send_retry(self, request, args, kwargs, {**options, **delay_options})
        retry = Retry(exc=exc, when=eta or countdown)
        retry.eager_result = eager
        if throw:
            raise retry
        return retry

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Store a custom state (e.g. ``PROGRESS``) with ``meta`` as its info."""
        task_id = task_id or self.request.id
        if task_id is None:
            return
        self.backend.store(
            task_id,
            {
                "status": state or states.PENDING,
                "result": meta,
                "traceback": None,
                "children": [],
                "date_done": None,
                "task_id": task_id,
            },
        )

    def send_event(self, type_: str, **fields: Any) -> None:
        """Send a custom event (e.g. ``task-progress``) about the running task, signed with
        the worker's name, for monitors reading ``app.events`` (as Celery's)."""
        request = self.request
        with self.app.events.default_dispatcher(hostname=request.hostname) as dispatcher:
            dispatcher.send(type_, uuid=request.id, **fields)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """Called by the worker just before the task runs."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Called by the worker when the task returned."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called by the worker when the task raised."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called by the worker when the task is to be retried."""

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called by the worker after the task ended, whatever the outcome."""

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"


_traced_call: ContextVar[Task[Any, Any] | None] = ContextVar("traced_call", default=None)


def call_task_body(task: Task[Any, Any], args: Any, kwargs: Any) -> Any:
    """Run a task's body for a worker or ``apply()``, under the request already pushed.

    When a base class overrides ``__call__`` (Celery's Flask pattern: run inside an app
    context), the body is entered through it, as Celery does; else ``run`` is called.
    """
    if type(task).__call__ is Task.__call__:
        return _awaited(task.run(*args, **kwargs))
    token = _traced_call.set(task)
    try:
        return _awaited(task(*args, **kwargs))
    finally:
        _traced_call.reset(token)


def _awaited(result: Any) -> Any:
    if inspect.iscoroutine(result):
        import asyncio  # only for async def tasks: it is a large import

        return asyncio.run(result)
    return result


def make_task_class(
    app: Celery,
    fun: Callable[..., Any],
    name: str,
    base: type[Task[Any, Any]],
    bind: bool,
    options: dict[str, Any],
) -> type[Task[Any, Any]]:
    """The per-task subclass Celery also builds: ``run`` is the function."""
    attrs: dict[str, Any] = {
        "name": name,
        "app": app,
        "run": fun if bind else staticmethod(fun),
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__qualname__": getattr(fun, "__qualname__", name),
        "__name__": fun.__name__,  # on the instance too, as a Celery task object has it
        "__wrapped__": fun,
        "abstract": False,
        "_signature_cache": None,
        **options,
    }
    return type(fun.__name__, (base,), attrs)
