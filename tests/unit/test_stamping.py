"""Canvas stamping (Celery 5.3's ``StampingVisitor``): stamps land on every part of a
workflow, travel in the message headers, reach the worker's request, and survive a retry."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery, chain, chord, group, signals
from minicelery.canvas import Signature, StampingVisitor
from minicelery.canvas.stamping import merge_stamps


class Stamp42(StampingVisitor):
    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"stamp": 42}


class Recording(StampingVisitor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        self.seen.append(f"sig:{sig.task}")
        return {"on_signature": True}

    def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
        self.seen.append("group")
        return {"in_group": "yes"}

    def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
        self.seen.append("chain")
        return {}

    def on_chord_body(self, sig: Any, **headers: Any) -> dict[str, Any]:
        self.seen.append("body")
        return {"body": 1}

    def on_callback(self, callback: Any, **headers: Any) -> dict[str, Any]:
        self.seen.append("callback")
        return {"is_callback": True}


@pytest.fixture
def tasks(celery_app: Celery) -> dict[str, Any]:
    @celery_app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @celery_app.task(name="t.xsum", shared=False)
    def xsum(values: list[int]) -> int:
        return sum(values)

    @celery_app.task(name="t.stamps", bind=True)
    def stamps(self: Any) -> Any:
        return [self.request.stamped_headers, self.request.stamps]

    @celery_app.task(name="t.retry_once", bind=True, max_retries=1, default_retry_delay=0)
    def retry_once(self: Any) -> Any:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return self.request.stamps

    return {"add": add, "xsum": xsum, "stamps": stamps, "retry_once": retry_once}


def test_a_visitor_stamps_a_signature_and_names_its_stamps(tasks: dict[str, Any]) -> None:
    sig = tasks["add"].si(1, 1)
    sig.stamp(visitor=Stamp42())
    assert sig.options["stamp"] == 42
    assert sig.options["stamped_headers"] == ["stamp"]
    sig.stamp(another="x")
    assert sig.options["another"] == "x" and sig.options["stamp"] == 42
    assert sorted(sig.options["stamped_headers"]) == ["another", "stamp"]


def test_every_part_of_a_workflow_is_visited(tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    link = add.si(0, 0)
    workflow = group(chain(add.s(1, 1), add.s(2)), chord([add.s(3, 3)], xsum.s()))
    workflow.tasks[-1].body.link(link)
    visitor = Recording()
    workflow.stamp(visitor=visitor)
    assert visitor.seen[0] == "group"
    assert {"chain", "body", "callback"} <= set(visitor.seen)
    the_chain, the_chord = workflow.tasks
    for member in [*the_chain.tasks, *the_chord.tasks, the_chord.body, link]:
        assert member.options["on_signature"] is True, member
        assert member.options["in_group"] == "yes", member
    assert the_chord.body.options["body"] == 1
    assert link.options["is_callback"] is True
    assert "is_callback" not in the_chord.body.options


def test_append_stamps_collects_duplicates_in_a_list(tasks: dict[str, Any]) -> None:
    sig = tasks["add"].si(1, 1)
    sig.stamp(visitor=Stamp42())
    sig.stamp(visitor=Stamp42(), append_stamps=True)
    assert sig.options["stamp"] == [42, 42]


def test_merge_keeps_existing_values_unless_appending() -> None:
    into: dict[str, Any] = {"a": 1, "l": [1], "d": {"x": 1}}
    merge_stamps(into, {"a": 2, "l": [2], "d": {"y": 2}, "new": 3}, append=False)
    assert into == {"a": 1, "l": [1, 2], "d": {"x": 1, "y": 2}, "new": 3}
    merge_stamps(into, {"a": 5}, append=True)
    assert into["a"] == [1, 5]


def test_stamps_travel_in_headers_not_properties(
    celery_app: Celery, tasks: dict[str, Any]
) -> None:
    seen: dict[str, Any] = {}

    def on_publish(sender: Any = None, headers: Any = None, properties: Any = None,
                   **kwargs: Any) -> None:  # fmt: skip
        seen.update(headers=dict(headers), properties=dict(properties or {}))

    signals.before_task_publish.connect(on_publish, weak=False)
    try:
        sig = tasks["add"].si(1, 1)
        sig.stamp(visitor=Stamp42())
        sig.apply_async()
    finally:
        signals.before_task_publish.disconnect(on_publish)
    assert seen["headers"]["stamped_headers"] == ["stamp"]
    assert seen["headers"]["stamps"] == {"stamp": 42}
    assert "stamp" not in seen["properties"] and "stamped_headers" not in seen["properties"]


def test_the_worker_sees_the_stamps_and_a_retry_keeps_them(
    celery_app: Celery, tasks: dict[str, Any], celery_worker: Any
) -> None:
    received: list[Any] = []

    def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        received.append(request.stamps)

    signals.task_received.connect(on_received, weak=False)
    try:
        sig = tasks["stamps"].si()
        sig.stamp(visitor=Stamp42())
        assert sig.apply_async().get(timeout=5) == [["stamp"], {"stamp": 42}]
        again = tasks["retry_once"].si()
        again.stamp(visitor=Stamp42())
        assert again.apply_async().get(timeout=5) == {"stamp": 42}
    finally:
        signals.task_received.disconnect(on_received)
    assert received and all(stamps == {"stamp": 42} for stamps in received)


def test_a_stamped_chord_runs_with_its_stamps(
    celery_app: Celery, tasks: dict[str, Any], celery_worker: Any
) -> None:
    add, xsum, stamps = tasks["add"], tasks["xsum"], tasks["stamps"]
    workflow = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    workflow.stamp(visitor=Stamp42())
    assert workflow.apply_async().get(timeout=10) == 6
    body = chain(add.si(1, 1), stamps.si())
    body.stamp(visitor=Stamp42())
    assert body.apply_async().get(timeout=10) == [["stamp"], {"stamp": 42}]


def test_eager_apply_has_the_stamps(tasks: dict[str, Any]) -> None:
    sig: Signature = tasks["stamps"].si()
    sig.stamp(visitor=Stamp42())
    assert sig.apply().get() == [["stamp"], {"stamp": 42}]
