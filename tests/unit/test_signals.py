"""Signals: Celery's connect forms, sender filters, disconnect, weak references and
receivers that raise."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

from minicelery import Celery, Task, signals
from minicelery.signals import Signal


class Collector:
    """Receivers that record what they were sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        return "ok"

    def method(self, sender: Any = None, **kwargs: Any) -> str:
        self.calls.append({"sender": sender, **kwargs})
        return "method"


def test_connect_as_a_call() -> None:
    signal = Signal("test")
    collector = Collector()
    assert signal.connect(collector) is collector
    responses = signal.send(sender="me", value=1)
    assert collector.calls == [{"signal": signal, "sender": "me", "value": 1}]
    assert responses == [(collector, "ok")]


def test_connect_as_a_bare_decorator() -> None:
    signal = Signal("test")
    seen: list[Any] = []

    @signal.connect
    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append((sender, kwargs["value"]))

    assert callable(receiver)
    signal.send(sender="s", value=2)
    assert seen == [("s", 2)]


def test_connect_decorator_with_a_sender() -> None:
    signal = Signal("test")
    seen: list[Any] = []

    @signal.connect(sender="wanted")  # type: ignore[untyped-decorator]
    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    signal.send(sender="wanted")
    signal.send(sender="other")
    signal.send(sender=None)
    assert seen == ["wanted"]


def test_calling_the_signal_connects(app: Celery) -> None:
    signal = Signal("test")
    seen: list[Any] = []

    @signal
    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    signal.send(sender=1)
    assert seen == [1]


def test_sender_may_be_a_task_or_its_name(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="proj.other")
    def other() -> None:
        return None

    signal = Signal("test")
    by_object, by_name = Collector(), Collector()
    signal.connect(by_object, sender=add)
    signal.connect(by_name, sender="proj.add")
    signal.send(sender=add)
    signal.send(sender=other)
    signal.send(sender="proj.add")
    assert [c["sender"] for c in by_object.calls] == [add]
    assert [c["sender"] for c in by_name.calls] == [add, "proj.add"]


def test_connecting_twice_calls_once() -> None:
    signal = Signal("test")
    collector = Collector()
    signal.connect(collector)
    signal.connect(collector)
    signal.send(sender=None)
    assert len(collector.calls) == 1


def test_dispatch_uid_deduplicates() -> None:
    signal = Signal("test")
    first, second = Collector(), Collector()
    signal.connect(first, dispatch_uid="uid")
    signal.connect(second, dispatch_uid="uid")
    signal.send(sender=None)
    assert len(first.calls) == 1
    assert second.calls == []
    assert signal.disconnect(dispatch_uid="uid") is True
    signal.send(sender=None)
    assert len(first.calls) == 1


def test_disconnect() -> None:
    signal = Signal("test")
    collector = Collector()
    signal.connect(collector)
    assert signal.disconnect(collector) is True
    assert signal.disconnect(collector) is False
    signal.send(sender=None)
    assert collector.calls == []


def test_disconnect_with_a_sender() -> None:
    signal = Signal("test")
    collector = Collector()
    signal.connect(collector, sender="a")
    assert signal.disconnect(collector) is False  # connected for sender 'a' only
    assert signal.disconnect(collector, sender="a") is True
    signal.send(sender="a")
    assert collector.calls == []


def test_bound_method_receiver_and_disconnect() -> None:
    signal = Signal("test")
    collector = Collector()
    signal.connect(collector.method)
    assert signal.send(sender="s") == [(collector.method, "method")]
    assert signal.disconnect(collector.method) is True
    signal.send(sender="s")
    assert len(collector.calls) == 1


def test_receivers_are_weak_by_default() -> None:
    signal = Signal("test")
    calls: list[int] = []

    def receiver(**kwargs: Any) -> None:
        calls.append(1)

    signal.connect(receiver)
    del receiver
    gc.collect()
    signal.send(sender=None)
    assert calls == []


def test_weak_false_keeps_the_receiver_alive() -> None:
    signal = Signal("test")
    calls: list[int] = []
    signal.connect(lambda **kwargs: calls.append(1), weak=False)
    gc.collect()
    signal.send(sender=None)
    assert calls == [1]


def test_dead_bound_method_is_skipped() -> None:
    signal = Signal("test")
    collector = Collector()
    signal.connect(collector.method)
    calls = collector.calls
    del collector
    gc.collect()
    assert signal.send(sender=None) == []
    assert calls == []


def test_a_failing_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    signal = Signal("test")
    after = Collector()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signal.connect(broken)
    signal.connect(after)
    with caplog.at_level(logging.ERROR, logger="minicelery.signals"):
        responses = signal.send(sender="s")
    assert len(after.calls) == 1  # later receivers still run
    assert responses[0][0] is broken
    assert isinstance(responses[0][1], RuntimeError)
    assert responses[1] == (after, "ok")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "receiver bug" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_a_failing_task_signal_receiver_does_not_fail_the_task(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="proj.fine")
    def fine() -> str:
        return "fine"

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("prerun receiver bug")

    signals.task_prerun.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="minicelery.signals"):
            result = fine.apply()
    finally:
        signals.task_prerun.disconnect(broken)
    assert result.get() == "fine"
    assert any("prerun receiver bug" in r.getMessage() for r in caplog.records)


def test_publish_signals_fire_with_celerys_arguments(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []

    def on_before(
        sender: Any,
        body: Any,
        exchange: str,
        routing_key: str,
        headers: Any,
        properties: Any,
        declare: Any,
        retry_policy: Any,
        **kw: Any,
    ) -> None:
        before.append({"sender": sender, "routing_key": routing_key, "id": headers["id"]})

    def on_after(
        sender: Any, headers: Any, body: Any, exchange: str, routing_key: str, **kw: Any
    ) -> None:
        after.append({"sender": sender, "routing_key": routing_key, "id": headers["id"]})

    signals.before_task_publish.connect(on_before, sender="proj.add")
    signals.after_task_publish.connect(on_after)
    try:
        result = add.apply_async((1, 2), queue="q")
    finally:
        signals.before_task_publish.disconnect(on_before, sender="proj.add")
        signals.after_task_publish.disconnect(on_after)
    expected = {"sender": "proj.add", "routing_key": "q", "id": result.id}
    assert before == [expected]
    assert after == [expected]


def test_task_signals_with_a_task_sender(app: Celery) -> None:
    @app.task(name="proj.a")
    def a() -> int:
        return 1

    @app.task(name="proj.b")
    def b() -> int:
        return 2

    seen: list[tuple[str, Any]] = []

    @signals.task_success.connect(sender=a)  # type: ignore[untyped-decorator]
    def on_success(sender: Task[Any, Any], result: Any, **kw: Any) -> None:
        seen.append((sender.name, result))

    try:
        a.apply()
        b.apply()
    finally:
        signals.task_success.disconnect(on_success, sender=a)
    assert seen == [("proj.a", 1)]
