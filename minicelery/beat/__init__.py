"""Periodic tasks, as Celery's ``celery.beat``: ``Scheduler`` (entries in memory, the base of
custom schedulers), ``PersistentScheduler`` (the default: any number of beats may run, a lease
in Redis elects the one that sends and each run goes out exactly once), and ``Service``, the
loop that runs one of them."""

from .entry import BeatLazyFunc, ScheduleEntry
from .persistent import LEASE, PersistentScheduler, load_entries
from .pidbox import BeatPidbox, beat_nodename
from .scheduler import DEFAULT_MAX_INTERVAL, Scheduler, SchedulingError, event_t
from .service import EmbeddedService, Service

__all__ = [
    "DEFAULT_MAX_INTERVAL",
    "LEASE",
    "BeatLazyFunc",
    "BeatPidbox",
    "EmbeddedService",
    "PersistentScheduler",
    "ScheduleEntry",
    "Scheduler",
    "SchedulingError",
    "Service",
    "beat_nodename",
    "event_t",
    "load_entries",
]
