"""The worker's memory of revoked ids and rate limits, and the autoscaler's decisions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from minicelery.broker import Delivery
from minicelery.message import TaskMessage
from minicelery.worker.autoscale import Autoscaler
from minicelery.worker.pool import Job
from minicelery.worker.state import Gate, Revoked, TokenBucket, parse_rate


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("10/s", 10.0), ("120/m", 2.0), ("36/h", 0.01), ("5", 5.0), (2, 2.0), (None, None),
     ("0/s", None), (" 3 / m ", 0.05)],
)  # fmt: skip
def test_rates_parse_like_celery(rate: Any, per_second: float | None) -> None:
    assert parse_rate(rate) == pytest.approx(per_second) if per_second else parse_rate(rate) is None


@pytest.mark.parametrize("rate", ["fast", "10/d", "/s", "-1/s"])
def test_bad_rates_are_rejected(rate: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        parse_rate(rate)


def test_revoked_ids_expire() -> None:
    revoked = Revoked()
    revoked.add(["a"], time.time() + 60)
    revoked.add(["b"], time.time() - 1)
    assert "a" in revoked and "b" not in revoked and "c" not in revoked
    assert revoked.ids() == ["a"]


def test_a_bucket_gives_one_token_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(4.0)
    assert bucket.take() is True
    assert bucket.take() is False
    assert 0.0 < bucket.wait_time() <= 0.25


def _job(task_id: str, name: str = "t") -> Job:
    message = TaskMessage.__new__(TaskMessage)
    message.headers = {"id": task_id, "task": name}  # type: ignore[misc]
    return Job(Delivery(task_id, "celery", b""), message, False, False)


def test_the_gate_discards_revoked_and_holds_rate_limited_jobs_back() -> None:
    gate = Gate()
    gate.revoked.add(["gone"], time.time() + 60)
    assert gate.admit(_job("gone"), None) == Gate.REVOKED
    assert gate.admit(_job("1"), "20/s") == Gate.RUN
    assert gate.admit(_job("2"), "20/s") == Gate.LATER
    assert gate.admit(_job("3", "other"), "20/s") == Gate.RUN  # its own bucket
    assert gate.due() == [] and 0.0 < (gate.next_in() or 0) <= 0.05
    deadline = time.monotonic() + 2
    while not (due := gate.due()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [job.message.id for job in due] == ["2"]


def test_disabled_rate_limits_let_everything_through() -> None:
    gate = Gate(disable_rate_limits=True)
    assert [gate.admit(_job(str(i)), "1/h") for i in range(3)] == [Gate.RUN] * 3


class FakePool:
    def __init__(self, size: int) -> None:
        self.concurrency = size
        self.busy = 0

    def busy_jobs(self) -> list[int]:
        return list(range(self.busy))

    def grow(self, n: int) -> int:
        self.concurrency += n
        return self.concurrency

    def shrink(self, n: int) -> int:
        self.concurrency -= n
        return self.concurrency


def test_the_autoscaler_grows_to_the_backlog_and_shrinks_after_the_keepalive() -> None:
    pool = FakePool(1)
    scaler = Autoscaler(pool, 4, 1, keepalive=0.05)  # type: ignore[arg-type]
    pool.busy = 1
    scaler.step(waiting=10)
    assert pool.concurrency == 4
    pool.busy = 0
    scaler._next_check = 0.0
    scaler.step(waiting=0)
    assert pool.concurrency == 4  # within the keepalive
    time.sleep(0.06)
    scaler._next_check = 0.0
    scaler.step(waiting=0)
    assert pool.concurrency == 1
    with pytest.raises(ValueError):
        Autoscaler(pool, 1, 2, keepalive=1)  # type: ignore[arg-type]
