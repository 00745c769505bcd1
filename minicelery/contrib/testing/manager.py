"""Helpers for integration tests that drive a running worker (Celery's
``celery.contrib.testing.manager``): poll until something happens, join results with
progress remarks, and ask workers what they hold."""

from __future__ import annotations

import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TextIO

from ... import states
from ...app import Celery
from ...exceptions import OperationalError, TimeoutError
from ...result import AsyncResult
from ...result_set import ResultSet

E_STILL_WAITING = "Still waiting for {0}.  Trying again {when}: {exc!r}"


class Sentinel(Exception):
    """Raised by a check that has not come true yet (see :meth:`Manager.true_or_raise`)."""


def retry_over_time(
    fun: Callable[..., Any],
    catch: tuple[type[BaseException], ...],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    errback: Callable[[BaseException, Iterator[float], int], float] | None = None,
    max_retries: int | None = None,
    interval_start: float = 2,
    interval_step: float = 2,
    interval_max: float = 30,
    callback: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> Any:
    """Call ``fun`` until it stops raising one of ``catch``, waiting longer each time (up to
    ``interval_max``); after ``max_retries`` retries or ``timeout`` seconds the last error is
    raised. ``errback(exc, intervals, retries)`` may choose the next wait."""
    intervals = _intervals(interval_start, interval_step, interval_max)
    deadline = None if timeout is None else time.monotonic() + timeout
    for retries in itertools.count():
        try:
            return fun(*args, **(kwargs or {}))
        except catch as exc:
            out_of_time = deadline is not None and time.monotonic() > deadline
            if (max_retries is not None and retries >= max_retries) or out_of_time:
                raise
            wait = errback(exc, intervals, retries) if errback else next(intervals)
            if callback is not None:
                callback()
            time.sleep(max(0.0, float(wait)))  # the poll interval the caller asked for
    raise AssertionError("unreachable")  # pragma: no cover


def _intervals(start: float, step: float, maximum: float) -> Iterator[float]:
    current = start
    while True:
        yield min(current, maximum)
        current += step


class ManagerMixin:
    """What :class:`Manager` offers, for classes that already hold an ``app``."""

    app: Celery

    def _init_manager(
        self,
        block_timeout: float = 30 * 60.0,
        no_join: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self.connerrors: tuple[type[BaseException], ...] = (OperationalError,)
        self.block_timeout = block_timeout
        self.no_join = no_join

    def remark(self, s: str, sep: str = "-") -> None:
        print(f"{sep}{s}", file=self.stdout)

    def warn(self, s: str) -> None:
        self.stderr.write(s + "\n")

    def missing_results(self, r: Iterable[AsyncResult]) -> list[str]:
        """Ids of the results in ``r`` that are not ready yet."""
        return [res.id for res in r if not res.ready()]

    def wait_for(self, fun: Callable[..., Any], catch: tuple[type[BaseException], ...],
                 desc: str = "thing", args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None,
                 errback: Callable[[BaseException, float, int], None] | None = None,
                 max_retries: int = 10, interval_start: float = 0.1, interval_step: float = 0.5,
                 interval_max: float = 5.0, emit_warning: bool = False,
                 **options: Any) -> Any:  # fmt: skip
        """Call ``fun`` until it stops raising one of ``catch`` (which means "not yet")."""

        def on_error(exc: BaseException, intervals: Iterator[float], retries: int) -> float:
            interval = next(intervals)
            if emit_warning:
                self.warn(E_STILL_WAITING.format(desc, when=f"in {interval:.2f}s", exc=exc))
            if errback:
                errback(exc, interval, retries)
            return interval

        return self.retry_over_time(
            fun, catch, args=args, kwargs=kwargs or {}, errback=on_error,
            max_retries=max_retries, interval_start=interval_start,
            interval_step=interval_step, interval_max=interval_max, **options,
        )  # fmt: skip

    def ensure_not_for_a_while(self, fun: Callable[..., Any],
                               catch: tuple[type[BaseException], ...], desc: str = "thing",
                               max_retries: int = 20, interval_start: float = 0.1,
                               interval_step: float = 0.02, interval_max: float = 1.0,
                               emit_warning: bool = False, **options: Any) -> None:  # fmt: skip
        """Assert that ``fun`` keeps raising one of ``catch`` for a while."""
        try:
            self.wait_for(fun, catch, desc=desc, max_retries=max_retries,
                          interval_start=interval_start, interval_step=interval_step,
                          interval_max=interval_max, emit_warning=emit_warning)  # fmt: skip
        except catch:
            return
        raise AssertionError(f"Should not have happened: {desc}")

    def retry_over_time(self, *args: Any, **kwargs: Any) -> Any:
        return retry_over_time(*args, **kwargs)

    def join(self, r: Any, propagate: bool = False, max_retries: int = 10, **kwargs: Any) -> Any:
        """``r.get()`` (a result or a result set), remarking on what is still missing after
        each timeout, up to ``max_retries`` times; then the test fails."""
        if self.no_join:
            return None
        if not isinstance(r, ResultSet):
            r = ResultSet([r], app=self.app)
        received: list[str] = []
        attempts: Iterable[int] = range(max_retries) if max_retries else itertools.count()
        for _ in attempts:
            received.clear()
            try:
                return r.get(callback=lambda task_id, value: received.append(task_id),
                             propagate=propagate, **kwargs)  # fmt: skip
            except TimeoutError as exc:
                waiting = ", ".join(self.missing_results(r))
                self.remark(f"Still waiting for {len(r) - len(received)}/{len(r)}: "
                            f"[{waiting[:256]}]: {exc!r}", "!")  # fmt: skip
            except self.connerrors as exc:
                self.remark(f"join: connection lost: {exc!r}", "!")
        raise AssertionError("Test failed: Missing task results")

    def inspect(self, timeout: float = 3.0) -> Any:
        return self.app.control.inspect(timeout=timeout)

    def query_tasks(self, ids: Sequence[str], timeout: float = 0.5) -> Iterator[Any]:
        tasks = self.inspect(timeout).query_task(*ids) or {}
        yield from tasks.items()

    def query_task_states(self, ids: Sequence[str], timeout: float = 0.5) -> dict[str, set[str]]:
        """``{'active'|'reserved'|'scheduled'|...: {task ids}}`` from every worker's reply."""
        found: dict[str, set[str]] = defaultdict(set)
        for _hostname, reply in self.query_tasks(ids, timeout=timeout):
            for task_id, (state, _info) in reply.items():
                found[state].add(task_id)
        return found

    def assert_accepted(self, ids: Sequence[str], interval: float = 0.5,
                        desc: str = "waiting for tasks to be accepted", **policy: Any) -> Any:
        return self.assert_task_worker_state(self.is_accepted, ids, interval=interval,
                                             desc=desc, **policy)  # fmt: skip

    def assert_received(self, ids: Sequence[str], interval: float = 0.5,
                        desc: str = "waiting for tasks to be received", **policy: Any) -> Any:
        return self.assert_task_worker_state(self.is_received, ids, interval=interval,
                                             desc=desc, **policy)  # fmt: skip

    def assert_result_tasks_in_progress_or_completed(
        self, async_results: Sequence[AsyncResult], interval: float = 0.5,
        desc: str = "waiting for tasks to be started or completed", **policy: Any,
    ) -> Any:  # fmt: skip
        return self.assert_task_state_from_result(self.is_result_task_in_progress,
                                                  async_results, interval=interval,
                                                  desc=desc, **policy)  # fmt: skip

    def assert_task_state_from_result(self, fun: Callable[..., bool], results: Any,
                                      interval: float = 0.5, **policy: Any) -> Any:  # fmt: skip
        return self.wait_for(partial(self.true_or_raise, fun, results, timeout=interval),
                             (Sentinel,), **policy)  # fmt: skip

    @staticmethod
    def is_result_task_in_progress(results: Iterable[AsyncResult], **kwargs: Any) -> bool:
        return all(r.state in (states.STARTED, states.SUCCESS) for r in results)

    def assert_task_worker_state(self, fun: Callable[..., bool], ids: Sequence[str],
                                 interval: float = 0.5, **policy: Any) -> Any:  # fmt: skip
        return self.wait_for(partial(self.true_or_raise, fun, ids, timeout=interval),
                             (Sentinel,), **policy)  # fmt: skip

    def is_received(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(["reserved", "active", "ready"], ids, **kwargs)

    def is_accepted(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(["active", "ready"], ids, **kwargs)

    def _ids_matches_state(self, expected: Sequence[str], ids: Sequence[str],
                           timeout: float = 0.5) -> bool:  # fmt: skip
        found = self.query_task_states(ids, timeout=timeout)
        return all(any(t in found[k] for k in expected) for t in ids)

    def true_or_raise(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        res = fun(*args, **kwargs)
        if not res:
            raise Sentinel()
        return res

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """Empty the app's default queue, then wait until no worker runs a task (so the next
        test starts clean)."""
        self.app.broker.purge([self.app.conf.task_default_queue])
        deadline = time.monotonic() + timeout
        inspect = self.app.control.inspect()
        while time.monotonic() < deadline:
            active = inspect.active() or {}
            if not any(active.values()):
                return
            time.sleep(0.1)  # poll interval
        raise TimeoutError(f"workers still busy after {timeout:.0f} s")


class Manager(ManagerMixin):
    """Test helpers for task integration tests: ``Manager(app)``."""

    def __init__(self, app: Celery, **kwargs: Any) -> None:
        self.app = app
        self._init_manager(**kwargs)


__all__ = ["Manager", "ManagerMixin", "Sentinel", "retry_over_time"]
