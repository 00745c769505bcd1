"""The beat service: runs a scheduler in a loop until stopped. With the default scheduler it
holds the beat lease while it sends, and stands by while another beat holds it; it can also
answer remote-control pings (``beat_enable_remote_control``)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import select
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import signals
from ..exceptions import ImproperlyConfigured, OperationalError
from .persistent import LEASE, Clock, PersistentScheduler
from .pidbox import BeatPidbox
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)


class _Stopper:
    """A stop flag a signal handler may set, and a sleep that setting it cuts short."""

    def __init__(self) -> None:
        self.stopped = False
        self._closed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def stop(self) -> None:
        self.stopped = True
        if self._closed:
            return  # the descriptors may belong to someone else by now
        # A full pipe means already woken.
        with contextlib.suppress(OSError):
            os.write(self._write, b"x")

    def wait(self, seconds: float) -> None:
        if not self.stopped and seconds > 0:
            select.select([self._read], [], [], seconds)

    def close(self) -> None:
        self._closed = True
        os.close(self._read)
        os.close(self._write)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def scheduler_class(spec: Any) -> type[Scheduler]:
    """A scheduler class, or its ``module:Class`` path (``celery.`` paths name ours)."""
    if not isinstance(spec, str):
        return spec  # type: ignore[no-any-return]
    module_name, _, attr = spec.replace(":", ".").rpartition(".")
    if module_name == "celery" or module_name.startswith("celery."):
        # Celery's own classes could never drive this app, even where Celery is installed.
        module_name = "mini" + module_name
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ImproperlyConfigured(f"scheduler {spec!r} cannot be imported") from None
    try:
        found: type[Scheduler] = getattr(module, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"scheduler {spec!r} does not exist") from None
    return found


class Service:
    """Runs a scheduler until :meth:`stop`. The default scheduler keeps its state in Redis
    and sends only while this beat holds the lease, ready to take over when another
    holder's lease runs out (it died)."""

    scheduler_cls: Any = PersistentScheduler

    def __init__(
        self,
        app: Celery,
        max_interval: float | None = None,
        schedule_filename: str | None = None,
        scheduler_cls: Any = None,
        remote_control: bool | None = None,
        hostname: str | None = None,
        *,
        clock: Clock = time.time,
        owner: str | None = None,
        lease_timeout: float | None = None,
    ) -> None:
        app.ensure_configured()
        self.app = app
        self.owner = owner or default_owner()
        self.lease_timeout = lease_timeout or app.conf.beat_lease_timeout or 5.0
        self.schedule_filename = schedule_filename or app.conf.beat_schedule_filename
        self.remote_control = (
            app.conf.beat_enable_remote_control if remote_control is None else remote_control
        )
        self.hostname = hostname
        self.scheduler = self._build(scheduler_class(scheduler_cls or self.scheduler_cls),
                                     max_interval, clock)  # fmt: skip
        self.is_leader = False
        #: the loop interval the scheduler settled on, and the monotonic time of its last
        #: pass: what the remote-control thread judges liveness by.
        self.effective_max_interval: float | None = None
        self._last_tick: float | None = None
        self._pidbox: BeatPidbox | None = None
        self._outage: float | None = None
        self._stopper = _Stopper()
        self._is_stopped = threading.Event()

    def _build(self, cls: type[Scheduler], max_interval: float | None, clock: Clock) -> Scheduler:
        options: dict[str, Any] = {"max_interval": max_interval}
        if issubclass(cls, PersistentScheduler):
            options.update(owner=self.owner, clock=clock)
        else:
            options["schedule_filename"] = self.schedule_filename
        return cls(self.app, **options)

    @property
    def max_interval(self) -> float:
        return self.scheduler.max_interval

    @property
    def coordinated(self) -> bool:
        """True when the scheduler sends only under the lease (the default one)."""
        return isinstance(self.scheduler, PersistentScheduler)

    def start(self, embedded_process: bool = False) -> None:
        """Run until :meth:`stop` (safe to call from a signal handler or another thread)."""
        logger.info("beat: Starting...")
        signals.beat_init.send(sender=self)
        self.effective_max_interval = self.scheduler.max_interval
        if self.remote_control:
            self._pidbox = BeatPidbox(self)
            self._pidbox.start()
        # Stamped before the first pass: a beat that wedges before it ever ticks goes stale.
        self._last_tick = time.monotonic()
        try:
            while not self._stopper.stopped:
                delay = self.step()
                self._last_tick = time.monotonic()
                self._stopper.wait(delay)
        finally:
            self._resign()
            if self._pidbox is not None:
                self._pidbox.stop()
            self._is_stopped.set()

    def stop(self, wait: bool = False) -> None:
        """Ask the loop to end; with ``wait``, return once it has (from another thread)."""
        self._stopper.stop()
        if wait and self._last_tick is not None:
            self._is_stopped.wait()

    def step(self) -> float:
        """Send what is due (holding, or seeking, the lease); return the seconds to sleep."""
        try:
            delay = self._step() if self.coordinated else self.scheduler.tick()
        except OperationalError as exc:
            return self._on_outage(exc)
        except Exception:
            logger.exception("beat: unexpected error; retrying")
            return min(self.lease_timeout / 3, 5.0)
        if self._outage is not None:
            logger.warning("beat: Redis is reachable again")
            self._outage = None
        return delay

    def _step(self) -> float:
        assert isinstance(self.scheduler, PersistentScheduler)
        coordinator = self.scheduler.coordinator
        held, left = coordinator.hold_lease(LEASE, self.owner, self.lease_timeout)
        if not held:
            if self.is_leader:
                logger.warning("beat: another beat took over sending the periodic tasks")
            self.is_leader = False
            # Wake when the holder's lease would run out unless renewed: a dead holder is
            # replaced right then.
            return (left or self.lease_timeout / 3) + 0.01
        if not self.is_leader:
            logger.info("beat: %s is now the beat that sends (leader)", self.owner)
            self.is_leader = True
        return min(self.scheduler.tick(), self.lease_timeout / 3)

    def _on_outage(self, exc: OperationalError) -> float:
        if self._outage is None:
            logger.error("beat: %s; retrying", exc)
            self._outage = 0.1
        self.is_leader = False
        self._outage = min(self._outage * 2, 5.0)
        return self._outage

    def _resign(self) -> None:
        """Hand the lease over at once rather than when it runs out. Only a leader has one
        to give back: a beat stopped while it waited for Redis to come up has nothing to do
        here and must not wait for Redis again."""
        try:
            if self.is_leader and self._release():
                logger.info("beat: released the lease")
            self.scheduler.close()
        except OperationalError as exc:
            logger.warning("beat: could not release the lease (%s)", exc)
        self.is_leader = False
        self._stopper.close()

    def _release(self) -> bool:
        assert isinstance(self.scheduler, PersistentScheduler)
        return self.scheduler.coordinator.release_lease(LEASE, self.owner)


class EmbeddedService:
    """A beat in a thread of another process (``worker -B``); it does not answer remote
    control, the worker around it does."""

    def __init__(self, app: Celery, max_interval: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("remote_control", False)
        self.service = Service(app, max_interval=max_interval, **kwargs)
        self.thread = threading.Thread(target=self._run, name="Beat", daemon=True)

    def _run(self) -> None:
        signals.beat_embedded_init.send(sender=self)
        try:
            self.service.start()
        except Exception:
            logger.exception("beat: stopped by an unexpected error")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.service.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)
