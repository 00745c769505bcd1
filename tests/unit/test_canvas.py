"""Canvas primitives on memory://, run to completion by executing the sent messages in this
process (what a worker does with them, without a worker): chains, groups, chords, nesting,
map/starmap/chunks, serialized signatures and result helpers."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from minicelery import (
    Celery,
    GroupResult,
    Signature,
    chain,
    chord,
    group,
    signature,
    states,
)
from minicelery.canvas import chunks, maybe_signature, xmap, xstarmap
from minicelery.exceptions import ChordError
from minicelery.message import decode_message
from minicelery.result import AsyncResult, ResultBase, result_from_tuple
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON


def drain(app: Celery, queue: str = "celery", limit: int = 10_000) -> int:
    """Run every message on ``queue`` (and those the runs send) until it is empty."""
    ran = 0
    while True:
        app.broker.move_due(4e9)
        deliveries = app.broker.reserve("unit", [queue], 500)
        if not deliveries:
            return ran
        for delivery in deliveries:
            execute_message(app, decode_message(delivery.data), "unit@host", queue, ACCEPT_JSON)
            ran += 1
            assert ran <= limit, "workflow does not end"
        app.broker.ack("unit", [d.tag for d in deliveries])


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="t.xsum", shared=False)
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(name="t.fail", shared=False)
    def fail(*args: Any) -> None:
        raise ValueError("something something")

    @app.task(name="t.record", shared=False)
    def record(request: Any, exc: BaseException, traceback: str | None) -> None:
        seen.append((request.id, repr(exc), traceback is not None))

    @app.task(name="t.identity", shared=False)
    def identity(value: Any = None) -> Any:
        return value

    seen: list[Any] = []
    return {
        "add": add,
        "mul": mul,
        "xsum": xsum,
        "fail": fail,
        "record": record,
        "identity": identity,
        "seen": seen,
    }


# --------------------------------------------------------------------------- signatures


def test_signature_forms_and_partials(app: Celery, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    by_name = signature("t.add", args=(2, 2), countdown=10)
    assert by_name == add.signature((2, 2), countdown=10) == add.s(2, 2).set(countdown=10)
    assert by_name.options == {"countdown": 10}
    partial = add.s(2)
    assert partial(4) == 6  # called here
    result = partial.delay(4)
    drain(app)
    assert result.get(timeout=1) == 6
    assert add.si(2, 2).clone(args=(9,)).args == (2, 2)  # immutable: ignores new args
    merged = add.s(x=1).clone(kwargs={"y": 2}, queue="q")
    assert merged.kwargs == {"x": 1, "y": 2} and merged.options == {"queue": "q"}
    replaced = add.s(1, 2).replace(args=(3, 4))
    assert replaced.args == (3, 4) and replaced.task == "t.add"
    assert add.s(2).apply((3,)).get() == 5  # eagerly, here


def test_signature_dict_round_trip_rebuilds_every_kind(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    workflow = chain(add.s(1, 1), group(add.s(i) for i in range(3)), xsum.s())
    rebuilt = signature(json.loads(json.dumps(workflow)))
    assert type(rebuilt) is type(workflow)
    assert [type(t).__name__ for t in rebuilt.tasks] == ["Signature", "chord"]  # type: ignore[attr-defined]
    result = rebuilt.apply_async()
    drain(app)
    assert result.get(timeout=1) == 2 + 3 + 4
    for kind in (add.map([1]), add.starmap([(1, 2)]), add.chunks([(1, 2)], 1)):
        assert type(signature(json.loads(json.dumps(kind)))) is type(kind)
    pickled = pickle.loads(pickle.dumps(workflow))
    assert type(pickled) is type(workflow) and pickled == workflow


def test_client_without_the_task_sends_by_name(make_app: Any, app: Celery, tasks: Any) -> None:
    data = json.loads(json.dumps(chain(tasks["add"].s(2, 2), tasks["mul"].s(10))))
    client = make_app(set_as_current=False)
    assert "t.add" not in client.tasks
    result = signature(data, app=client).apply_async()
    drain(app)
    assert result.get(timeout=1) == 40


def test_links_and_new_style_errbacks(app: Celery, tasks: dict[str, Any]) -> None:
    add, fail, record = tasks["add"], tasks["fail"], tasks["record"]
    result = add.apply_async((2, 2), link=add.s(8))
    drain(app)
    assert result.get(timeout=1) == 4
    failing = fail.s()
    failing.on_error(record.s())
    failed = failing.apply_async()
    drain(app)
    assert tasks["seen"] == [(failed.id, "ValueError('something something')", True)]


# --------------------------------------------------------------------------- chains


def test_chain_passes_results_and_links_parents(app: Celery, tasks: dict[str, Any]) -> None:
    add, mul = tasks["add"], tasks["mul"]
    result = (add.s(2, 2) | add.s(4) | add.s(8))()
    drain(app)
    assert result.get(timeout=1) == 16
    assert result.parent.get(timeout=1) == 8  # type: ignore[union-attr]
    assert result.parent.parent.get(timeout=1) == 4  # type: ignore[union-attr]
    assert result.parent.parent.parent is None  # type: ignore[union-attr]
    assert chain(add.s(4), mul.s(8)).apply_async((16,)).id
    drain(app)
    immutable = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    drain(app)
    assert immutable.get(timeout=1) == 16


def test_chain_failure_stops_and_is_raised_by_the_last(app: Celery, tasks: dict[str, Any]) -> None:
    add, fail = tasks["add"], tasks["fail"]
    result = chain(add.s(1, 1), fail.s(), add.s(1), add.s(1)).apply_async()
    ran = drain(app)
    assert ran == 2
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=1)
    assert result.state == states.FAILURE


# --------------------------------------------------------------------------- groups


def test_group_result_api(app: Celery, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    result = group(add.s(i, i) for i in range(10))()
    assert isinstance(result, GroupResult) and len(result.children) == 10
    assert not result.ready() and result.waiting() and result.completed_count() == 0
    drain(app)
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10
    assert result.get(timeout=1) == [i + i for i in range(10)]
    assert result.join(timeout=1) == result.get()
    again = group(add.s(1, 1), add.s(2, 2))
    first, second = again(), again()
    assert first.id != second.id and first.results[0].id != second.results[0].id
    drain(app)
    assert first.get(timeout=1) == second.get(timeout=1) == [2, 4]
    result.save()
    restored = app.GroupResult.restore(result.id)
    assert restored == result and restored.get(timeout=1) == result.get()


def test_group_failure_and_partial_args(app: Celery, tasks: dict[str, Any]) -> None:
    add, fail = tasks["add"], tasks["fail"]
    result = group(add.s(1), fail.s(), add.s(2)).apply_async((10,))
    drain(app)
    assert result.failed() and not result.successful() and result.completed_count() == 2
    with pytest.raises(ValueError):
        result.get(timeout=1)
    assert result.get(timeout=1, propagate=False)[::2] == [11, 12]


def test_group_of_chains(app: Celery, tasks: dict[str, Any]) -> None:
    add, mul = tasks["add"], tasks["mul"]
    result = group(add.s(i, i) | mul.s(10) for i in range(5))()
    drain(app)
    assert result.get(timeout=1) == [i * 20 for i in range(5)]


# --------------------------------------------------------------------------- chords


def test_chord_calls_body_once_with_ordered_results(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum, identity = tasks["add"], tasks["xsum"], tasks["identity"]
    result = chord((add.s(i, i) for i in range(10)), xsum.s())()
    assert isinstance(result.parent, GroupResult)
    drain(app)
    assert result.get(timeout=1) == 90
    ordered = chord([add.s(i, 0) for i in range(30)], identity.s()).apply_async()
    drain(app)
    assert ordered.get(timeout=1) == list(range(30))
    piped = (group(add.s(i, i) for i in range(10)) | xsum.s())()
    called = chord(add.s(i, i) for i in range(100))(xsum.s())
    drain(app)
    assert piped.get(timeout=1) == 90
    assert called.get(timeout=1) == 9900


def test_chord_failure_is_a_chord_error_naming_the_task(app: Any, tasks: dict[str, Any]) -> None:
    add, fail, xsum, record = tasks["add"], tasks["fail"], tasks["xsum"], tasks["record"]
    body = xsum.s()
    body.link_error(record.s())
    result = chord([add.s(4, 4), fail.s(), add.s(8, 8)], body).apply_async()
    drain(app)
    culprit = result.parent.results[1].id
    assert result.state == states.FAILURE
    with pytest.raises(ChordError, match=f"Dependency {culprit} raised ValueError"):
        result.get(timeout=1, follow_parents=False)
    with pytest.raises(ValueError):  # as Celery: a failed parent is raised first
        result.get(timeout=1)
    assert tasks["seen"] == [(result.id, tasks["seen"][0][1], False)]


def test_empty_chord_calls_body_with_no_results(app: Celery, tasks: dict[str, Any]) -> None:
    result = chord([], tasks["identity"].s()).apply_async()
    drain(app)
    assert result.get(timeout=1) == []


def test_chord_part_counted_once_when_a_header_task_runs_twice(app: Celery, tasks: Any) -> None:
    add, identity = tasks["add"], tasks["identity"]
    chord([add.s(1, 1), add.s(2, 2)], identity.s()).apply_async()
    app.broker.move_due(4e9)
    first, second = app.broker.reserve("unit", ["celery"], 10)
    for data in (first.data, first.data):  # the first header task, delivered twice
        execute_message(app, decode_message(data), "h", "celery", ACCEPT_JSON)
    assert app.broker.queue_sizes(["celery"]) == {"celery": 0}  # body not sent
    for data in (second.data, second.data, first.data):
        execute_message(app, decode_message(data), "h", "celery", ACCEPT_JSON)
    assert app.broker.queue_sizes(["celery"]) == {"celery": 1}  # body sent exactly once


# --------------------------------------------------------------------------- nesting


def test_nested_workflows(app: Celery, tasks: dict[str, Any]) -> None:
    add, mul, xsum = tasks["add"], tasks["mul"], tasks["xsum"]
    # A chain into a group: the group gets the chain's result.
    into_group = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
    # A group followed by a task in a chain is a chord; a chain after the chord.
    with_chord = chain(add.s(1, 1), group(add.s(i) for i in range(3)), xsum.s(), mul.s(10))()
    # Chains of chords, chords of chains.
    chords = chain(
        chord([add.s(1, 1), add.s(2, 2)], xsum.s()),
        chord([add.s(1), add.s(2)], xsum.s()),
    )()
    of_chains = chord([add.s(1, 1) | mul.s(2), add.s(2, 2) | mul.s(3)], xsum.s())()
    nested_chord = chord([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(5, 5)], xsum.s())()
    drain(app)
    assert into_group.get(timeout=1) == [i + i for i in range(10)]
    assert into_group.parent.get(timeout=1) == 8
    assert with_chord.get(timeout=1) == 10 * ((2 + 0) + (2 + 1) + (2 + 2))
    assert chords.get(timeout=1) == (6 + 1) + (6 + 2)
    assert of_chains.get(timeout=1) == 4 + 12
    assert nested_chord.get(timeout=1) == 6 + 10


# --------------------------------------------------------------------------- map & chunks


def test_map_starmap_chunks(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    mapped = xsum.map([range(10), range(100)]).apply_async()
    starmapped = add.starmap(zip(range(10), range(10), strict=True)).delay()
    chunked = add.chunks(zip(range(100), range(100), strict=True), 10)()
    as_group = add.chunks(zip(range(10), range(10), strict=True), 5).group().skew(0, step=0)()
    drain(app)
    assert mapped.get(timeout=1) == [45, 4950]
    assert starmapped.get(timeout=1) == [i + i for i in range(10)]
    assert chunked.get(timeout=1) == [[2 * i for i in range(p, p + 10)] for p in range(0, 100, 10)]
    assert as_group.get(timeout=1) == [[0, 2, 4, 6, 8], [10, 12, 14, 16, 18]]
    assert isinstance(xsum.map([]), xmap) and isinstance(add.starmap([]), xstarmap)
    assert isinstance(add.chunks([], 2), chunks)


# --------------------------------------------------------------------------- results


def test_as_tuple_round_trip_and_collect(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]

    @app.task(name="t.spawn", shared=False)
    def spawn(n: int) -> Any:
        return group(add.s(i, i) for i in range(n))()

    result = spawn.delay(3)
    drain(app)
    values = [v for r, v in result.collect() if isinstance(r, AsyncResult) and r != result]
    assert values == [0, 2, 4]
    assert [type(r).__name__ for r in result.children] == ["GroupResult"]
    workflow = chord([add.s(1, 1), add.s(2, 2)], xsum.s())()
    rebuilt = result_from_tuple(workflow.as_tuple(), app)
    drain(app)
    assert rebuilt.get(timeout=1) == 6 and rebuilt.parent.get(timeout=1) == [2, 4]
    assert isinstance(rebuilt, ResultBase)


def test_eager_mode_runs_workflows_here(make_app: Any) -> None:
    app = make_app(task_always_eager=True)

    @app.task(name="e.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="e.xsum")
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    assert chain(add.s(1, 1), add.s(2)).apply_async().get() == 4
    assert group(add.s(i, i) for i in range(3)).apply_async().get() == [0, 2, 4]
    assert chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async().get() == 6


def test_maybe_signature(app: Celery, tasks: dict[str, Any]) -> None:
    assert maybe_signature(None) is None
    sig = tasks["add"].s(1)
    assert maybe_signature(sig) is sig
    assert isinstance(maybe_signature(dict(sig)), Signature)


def test_an_abandoned_header_task_still_completes_its_chord(app: Celery, tasks: Any) -> None:
    from minicelery.exceptions import TaskRevokedError
    from minicelery.trace import workflow_abandoned
    from minicelery.worker.executor import make_request

    add, identity = tasks["add"], tasks["identity"]
    result = chord([add.s(1, 1), add.s(2, 2)], identity.s()).apply_async()
    app.broker.move_due(4e9)
    first, second = app.broker.reserve("unit", ["celery"], 10)
    execute_message(app, decode_message(first.data), "h", "celery", ACCEPT_JSON)
    revoked = decode_message(second.data)  # never runs: revoked by the worker
    request = make_request(add, revoked, *revoked.decode_body(ACCEPT_JSON), "h", "celery")
    workflow_abandoned(app, request, TaskRevokedError("revoked"), states.REVOKED)
    drain(app)
    assert result.state == states.FAILURE
    with pytest.raises(ChordError, match=f"Dependency {revoked.id} raised TaskRevokedError"):
        result.get(timeout=1, follow_parents=False)


def test_group_links_and_chord_body_chains(app: Celery, tasks: dict[str, Any]) -> None:
    add, fail, mul, xsum, record = (tasks[k] for k in ("add", "fail", "mul", "xsum", "record"))
    g = group(add.s(2, 2), fail.s(), fail.s())
    g.link_error(record.s())  # called for each failing task
    g.link(add.si(100, 1))  # as Celery: on the first task only, immutable
    result = g.apply_async()
    drain(app)
    assert sorted(seen[0] for seen in tasks["seen"]) == sorted(r.id for r in result.results[1:])
    body_chain = chord([add.s(1, 1), add.s(2, 2)], xsum.s() | mul.s(10)).apply_async()
    drain(app)
    assert body_chain.get(timeout=1) == 60 and body_chain.parent.parent.get(timeout=1) == [2, 4]
    frozen = add.s(1, 1)
    promised = frozen.freeze()
    assert frozen.id == promised.id
    frozen.delay()
    drain(app)
    assert promised.get(timeout=1) == 2


def test_workflows_with_msgpack(make_app: Any) -> None:
    from minicelery.serialization import accepted_content_types

    app = make_app(task_serializer="msgpack", result_serializer="msgpack")

    @app.task(name="m.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="m.xsum", shared=False)
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    result = chain(add.s(1, 1), chord([add.s(i) for i in range(3)], xsum.s()), add.s(1))()
    accept = accepted_content_types(["msgpack"])
    while deliveries := app.broker.reserve("unit", ["celery"], 100):
        for delivery in deliveries:
            execute_message(app, decode_message(delivery.data), "h", "celery", accept)
        app.broker.ack("unit", [d.tag for d in deliveries])
    assert result.get(timeout=1) == (2 + 0) + (2 + 1) + (2 + 2) + 1


def test_chord_body_publish_rides_out_a_redis_error(app: Celery, tasks: Any) -> None:
    from minicelery.exceptions import OperationalError

    add, identity = tasks["add"], tasks["identity"]
    result = chord([add.s(1, 1)], identity.s()).apply_async()
    publish, failures = app.broker.publish, [OperationalError("Redis is unreachable")]

    def flaky(messages: Any) -> None:
        if failures:
            raise failures.pop()
        publish(messages)

    app.broker.publish = flaky  # type: ignore[method-assign]
    drain(app)
    assert not failures and result.get(timeout=1) == [2]
