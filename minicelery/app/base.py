"""``Celery``: the application — settings, the task registry, task creation and the
periodic-task helpers; sending and connections are its two mixins."""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from .. import _state, signals
from ..config import Settings
from ..exceptions import ImproperlyConfigured
from ..registry import TaskRegistry
from ..result import AsyncResult, GroupResult
from ..task import Task as BaseTask
from ..task import make_task_class
from .amqp import AMQP
from .discovery import Packages, discover
from .pydantic_models import task_options as pydantic_task_options
from .sending import Sending
from .shared import shared_functions, task_name_for

if TYPE_CHECKING:
    from typing import Concatenate

    from ..canvas.signature import Signature

P = ParamSpec("P")
R = TypeVar("R")


class Celery(Sending):
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
        task_cls: type[BaseTask[Any, Any]] | str | None = None,
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
            self.Task = _task_class(task_cls)
        self.tasks = TaskRegistry()
        self._pending_discovery: list[tuple[Packages, str | None]] = []
        self._creator_pid = os.getpid()
        self.queues_used: set[str] = set()
        self.amqp = AMQP(self)
        self.finalize()
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

    def config_from_envvar(
        self, variable_name: str, silent: bool = False, force: bool = False
    ) -> bool:
        """Load settings from the module named by the environment variable ``variable_name``
        (``app.config_from_envvar('CELERY_CONFIG_MODULE')``); False when it is unset and
        ``silent``."""
        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return False
            raise ImproperlyConfigured(
                f"The environment variable {variable_name!r} is not set: it must name the "
                "module to load the configuration from"
            )
        self.config_from_object(module_name, silent=silent, force=force)
        return True

    def import_modules(self) -> None:
        """Import ``imports`` and ``include`` and run the task discoveries asked for, so their
        tasks are registered (workers, beat and the command line do this at start-up)."""
        for name in (*self.conf.imports, *self.conf.include):
            importlib.import_module(name)
        signals.import_modules.send(sender=self)
        self._discover_pending()

    def autodiscover_tasks(
        self, packages: Packages = None, related_name: str | None = "tasks", force: bool = False
    ) -> None:
        """Import ``<package>.<related_name>`` for each package that has one; with no
        packages, for each installed Django app. Lazy as in Celery: done when the app
        imports its modules or is finalized, or now with ``force=True``. ``packages`` may
        be a callable returning them, called at that time."""
        if force:
            discover(packages, related_name)
        else:
            self._pending_discovery.append((packages, related_name))

    def _discover_pending(self) -> None:
        while self._pending_discovery:
            # Popped before importing: a task module that touches the app must not recurse.
            discover(*self._pending_discovery.pop(0))

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
        if shared and not any(f is fun for f, _ in shared_functions):
            # Like Celery, a task is also known to every other app of the process once it is
            # finalized (``python -m proj.celery worker`` has two instances of the same app).
            shared_functions.append((fun, {"name": name, "base": base, "bind": bind, **options}))
        existing = self.tasks.get(name)
        if existing is not None and getattr(existing, "__wrapped__", None) is fun:
            return existing
        options.update(pydantic_task_options(self, fun, name, bind, options))  # pops its own
        cls = make_task_class(self, fun, name, base or self.Task, bind, options)
        task = cls()
        self.tasks.register(task)
        return task

    def finalize(self) -> None:
        """Register the shared tasks this app does not know yet (workers call this), after
        running the task discoveries asked for."""
        self._discover_pending()
        for fun, options in list(shared_functions):
            if options.get("name") not in self.tasks:
                self._create_task(fun, **options)
        if "celery.map" not in self.tasks:
            from ..canvas.builtins import add_builtin_tasks

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
        from ..canvas.signature import Signature

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
        from ..canvas.signature import Signature

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
        from ..schedules import timezone_for

        return timezone_for(self.conf.timezone, self.conf.enable_utc)

    def now(self) -> dt.datetime:
        """The current time in the app's timezone (what crontab schedules compare with)."""
        return dt.datetime.now(self.timezone)

    @property
    def log(self) -> Any:
        """Celery's ``app.log``: logging set up as a worker does (``setup_logging_subsystem``)."""
        from .log import Logging

        found = self.__dict__.get("_log")
        if found is None:
            found = self.__dict__["_log"] = Logging(self)
        return found

    def bugreport(self) -> str:
        """Versions, platform and settings (secrets masked), for bug reports."""
        from .report import bug_report

        return bug_report(self)

    def start(self, argv: list[str] | None = None) -> None:
        """Run the command line with this app (``if __name__ == '__main__': app.start()``)."""
        from ..cli.main import main

        main(argv, app=self)

    def worker_main(self, argv: list[str] | None = None) -> None:
        """Run a worker of this app with command-line ``argv`` (as Celery's ``worker_main``)."""
        self.start(["worker", *(argv or [])])

    def __repr__(self) -> str:
        return f"<Celery {self.main} at {id(self):#x}>"


def _task_class(spec: type[BaseTask[Any, Any]] | str) -> type[BaseTask[Any, Any]]:
    """``task_cls`` as a class or, as Celery allows, ``'module:Class'``/``'module.Class'``."""
    if not isinstance(spec, str):
        return spec
    module_name, colon, name = spec.partition(":")
    if not colon:
        module_name, _, name = spec.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"task_cls {spec!r} cannot be imported: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, BaseTask)):
        raise ImproperlyConfigured(f"task_cls {spec!r} is not a Task subclass")
    return found
