"""Signals with Celery's names, arguments and ``connect`` forms."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Receiver = Callable[..., Any]


class Signal:
    """A hook point: receivers connect, senders ``send(sender=..., **named)``.

    ``connect`` works as a call, a bare decorator and a decorator with ``sender=``;
    receivers are held weakly (like Celery's) unless ``weak=False``.
    """

    def __init__(self, name: str, providing_args: frozenset[str] | None = None) -> None:
        self.name = name
        self.providing_args = providing_args or frozenset()
        self._receivers: list[tuple[Any, Any]] = []
        self._watchers: list[Any] = []  # weak references to callables told of each connect

    def connect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Any = None,
    ) -> Any:
        if receiver is None:

            def decorator(func: Receiver) -> Receiver:
                self._add(func, sender, weak, dispatch_uid)
                return func

            return decorator
        self._add(receiver, sender, weak, dispatch_uid)
        return receiver

    def _add(self, receiver: Receiver, sender: Any, weak: bool, dispatch_uid: Any) -> None:
        key = dispatch_uid if dispatch_uid is not None else _receiver_key(receiver)
        if any(k == key and s is sender for k, s, _ in self._entries()):
            return
        ref: Any = _Strong(receiver)
        if weak:
            ref = weakref.WeakMethod(receiver) if hasattr(receiver, "__func__") else _weak(receiver)
        self._receivers.append(((key, sender), ref))
        for watcher in list(self._watchers):
            told = watcher()
            if told is not None:
                told()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (held weakly) right after each receiver connects: a worker whose
        children run tasks hears at once that receivers wait in its main process."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__func__") else _weak(callback)
        self._watchers.append(ref)

    def unwatch(self, callback: Callable[[], None]) -> None:
        self._watchers = [w for w in self._watchers if w() not in (None, callback)]

    def _entries(self) -> list[tuple[Any, Any, Any]]:
        return [(key, sender, ref) for (key, sender), ref in self._receivers]

    def disconnect(
        self, receiver: Receiver | None = None, sender: Any = None, dispatch_uid: Any = None
    ) -> bool:
        key = dispatch_uid if dispatch_uid is not None else _receiver_key(receiver)
        before = len(self._receivers)
        self._receivers = [e for e in self._receivers if not (e[0][0] == key and e[0][1] is sender)]
        return len(self._receivers) != before

    def has_receivers(self) -> bool:
        """Whether anything is connected (a sender may skip building costly arguments)."""
        return bool(self._receivers)

    def has_live_receivers(self) -> bool:
        """Whether a receiver is connected and not yet garbage-collected."""
        return any(ref() is not None for _, ref in list(self._receivers))

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver for ``sender``; a failing receiver is logged, not raised."""
        if not self._receivers:
            return []  # the common case, on every task: keep it free
        responses = []
        for (_, wanted), ref in list(self._receivers):
            if (
                wanted is not None
                and wanted is not sender
                and wanted != getattr(sender, "name", None)
            ):
                continue
            receiver = ref()  # every stored ref is called to get its receiver (None when gone)
            if receiver is None:
                continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("Signal handler %r raised: %r", receiver, exc)
                responses.append((receiver, exc))
        return responses

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.connect(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


class _Strong:
    """A strong reference with the weakref call interface (for objects weakref refuses)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


def _weak(receiver: Receiver) -> Any:
    try:
        return weakref.ref(receiver)
    except TypeError:
        return _Strong(receiver)


def _receiver_key(receiver: Any) -> Any:
    if hasattr(receiver, "__self__") and hasattr(receiver, "__func__"):
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_revoked = Signal("task_revoked")
task_unknown = Signal("task_unknown")
task_rejected = Signal("task_rejected")
task_internal_error = Signal("task_internal_error")
worker_init = Signal("worker_init")
worker_ready = Signal("worker_ready")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_shutdown = Signal("worker_shutdown")
worker_shutting_down = Signal("worker_shutting_down")
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")
import_modules = Signal("import_modules")
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")
