"""Workflow shapes Celery accepts and minicelery must run the same way (memory://, messages
run in this process): group followed by group, one-task groups, empty steps, generator
headers, frozen ids."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from minicelery import Celery, chain, chord, group, signature, states
from minicelery.exceptions import ImproperlyConfigured, TimeoutError
from minicelery.result import AsyncResult, ResultSet
from minicelery.signals import after_task_publish, before_task_publish
from tests.unit.test_canvas import drain


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    ran: list[str] = []

    @app.task(name="s.add", shared=False)
    def add(x: Any, y: Any) -> Any:
        return x + y

    @app.task(name="s.xsum", shared=False)
    def xsum(numbers: list[Any]) -> Any:
        return sum(sum(n) if isinstance(n, list) else n for n in numbers)

    @app.task(name="s.identity", shared=False)
    def identity(value: Any = None) -> Any:
        return value

    @app.task(name="s.sum_and_record", bind=True, shared=False)
    def sum_and_record(self: Any, values: list[int]) -> int:
        ran.append(self.request.id)
        return sum(values)

    return {
        "add": add,
        "xsum": xsum,
        "identity": identity,
        "sum_and_record": sum_and_record,
        "ran": ran,
    }


def _layers(tasks: dict[str, Any], width: int, levels: int) -> list[Any]:
    record = tasks["sum_and_record"]
    steps = [group(record.si([1] * width) for _ in range(width))]
    steps.extend(group(record.s() for _ in range(width)) for _ in range(levels - 1))
    return steps


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("serialized", [False, True])
@pytest.mark.parametrize("as_chord_body", [False, True])
def test_each_group_gets_the_previous_groups_results(
    app: Celery, tasks: dict[str, Any], frozen: bool, serialized: bool, as_chord_body: bool
) -> None:
    """``group | group | ... | task``: every member of a group is called with the list of
    the previous group's results, and the last task's result is the chain's."""
    width, levels = 3, 4
    workflow: Any = chain(*_layers(tasks, width, levels), tasks["xsum"].s(), app=app)
    if as_chord_body:
        identity = tasks["identity"]
        workflow = chord([identity.si(0), identity.si(1)], workflow)
    if frozen:
        workflow.freeze()
    if serialized:
        workflow = signature(json.loads(json.dumps(workflow)), app=app)
    result = workflow.apply_async()
    drain(app)
    assert result.get(timeout=1) == width ** (levels + 1)
    assert len(tasks["ran"]) == len(set(tasks["ran"])) == width * levels


def test_publish_signal_gets_the_body_and_a_long_pipeline_stays_small(
    app: Celery, tasks: dict[str, Any]
) -> None:
    """``before_task_publish`` receives ``(args, kwargs, embed)`` as in Celery, and a chain
    of ten groups of 25 sends messages far below Redis-unfriendly sizes."""
    width, levels = 25, 10
    workflow = chain(*_layers(tasks, width, levels), tasks["xsum"].s(), app=app)
    bodies: list[Any] = []

    def capture(sender: Any = None, body: Any = None, **_: Any) -> None:
        bodies.append(body)

    before_task_publish.connect(capture, weak=False)
    try:
        result = workflow.apply_async()
    finally:
        before_task_publish.disconnect(capture)
    assert len(bodies) == width
    args, kwargs, embed = bodies[0]
    assert args == [[1] * width] and kwargs == {} and "chord" in embed
    assert max(len(json.dumps(body)) for body in bodies) < 128 * 1024
    drain(app)
    assert result.get(timeout=1) == width ** (levels + 1)


def test_task_protocol_is_a_known_setting_defaulting_to_2(make_app: Any) -> None:
    """Celery code reads ``app.conf.task_protocol`` to choose how chains travel."""
    assert make_app().conf.task_protocol == 2
    assert make_app(task_protocol=1).conf.task_protocol == 1
    with pytest.raises(ImproperlyConfigured, match="task_protocol"):
        make_app(task_protocol=3)


# --------------------------------------------------------------------------- generators


@contextlib.contextmanager
def published_ids() -> Iterator[list[str]]:
    """The ids of the messages published while in the block, in order."""
    sent: list[str] = []

    def capture(sender: Any = None, headers: Any = None, **_: Any) -> None:
        sent.append(headers["id"])

    after_task_publish.connect(capture, weak=False)
    try:
        yield sent
    finally:
        after_task_publish.disconnect(capture)


def test_a_generator_header_is_read_as_it_is_sent(app: Celery, tasks: dict[str, Any]) -> None:
    """Each header task is published once the generator has yielded the next one (that
    is how the last is recognised), and header tasks may finish before the last is read:
    the chord still completes once, with the results in order."""
    identity, xsum = tasks["identity"], tasks["xsum"]
    sent_when_read: list[int] = []

    def header(sent: list[str]) -> Any:
        for i in range(5):
            sent_when_read.append(len(sent))
            drain(app)  # the header tasks sent so far finish before the size is known
            yield identity.si(i)

    with published_ids() as sent:
        workflow = chord(header(sent), xsum.s())
        result = workflow()
    assert sent_when_read == [0, 0, 1, 2, 3]
    drain(app)
    assert result.get(timeout=1) == 0 + 1 + 2 + 3 + 4
    again = workflow()  # sent again: the same five tasks, read from the first pass
    drain(app)
    assert again.get(timeout=1) == 10


def test_a_generator_group_stays_unread_until_needed(app: Celery, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    read: list[int] = []

    def members() -> Any:
        for i in range(4):
            read.append(i)
            yield add.s(i, i)

    g = group(members())
    assert read == []
    seen = [(task.args, len(g.tasks)) for task in g.tasks]  # len() reads the rest mid-loop
    assert seen == [((i, i), 4) for i in range(4)]
    result = g.apply_async()
    drain(app)
    assert result.get(timeout=1) == [0, 2, 4, 6]


def test_chord_parts_of_unknown_size_wait_for_the_part_that_tells_it(app: Celery) -> None:
    backend = app.backend
    assert backend.chord_part_return("g", 0, 0, [states.SUCCESS, "a"], "t0") is None
    assert backend.chord_part_return("g", 2, 3, [states.SUCCESS, "c"], "t2") is None  # the last
    parts = backend.chord_part_return("g", 1, 0, [states.SUCCESS, "b"], "t1")
    assert parts == [[states.SUCCESS, "a"], [states.SUCCESS, "b"], [states.SUCCESS, "c"]]
    backend.chord_settle("g")
    assert backend.chord_part_return("h", 0, 0, [states.SUCCESS, "a"], "t0") is None
    assert backend.chord_part_return("h", 1, 2, [states.SUCCESS, "b"], "t1") == [
        [states.SUCCESS, "a"],
        [states.SUCCESS, "b"],
    ]


# --------------------------------------------------------------------------- empty steps


def run(app: Celery, sig: Any, *args: Any) -> Any:
    result = sig.apply_async(*args)
    drain(app)
    return result.get(timeout=1)


def test_empty_groups_and_chains_in_a_chain_are_no_ops(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    both = group(add.s(2, 2), add.s(4, 4))
    assert run(app, chain(both, group(), group())) == [4, 8]
    assert run(app, chain(both, group(), group(), xsum.s(), app=app)) == 12
    assert run(app, chain(group(), add.s(10), app=app), (5,)) == 15  # args reach add
    assert run(app, chain(chain(), add.s(10), app=app), (5,)) == 15
    assert run(app, chain(chain(group(), add.s(10)), add.s(20), app=app), (5,)) == 35
    assert run(app, chain(group(), group())) == []
    assert (both | group()) is both
    assert chain()() is None


def test_empty_chains_in_a_group_or_header_are_left_out(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    result = group(chain(), add.s(1, 2), chain(), add.s(3, 4)).apply_async()
    assert len(result.results) == 2
    drain(app)
    assert result.get(timeout=1) == [3, 7]
    assert run(app, chord([chain()], body=xsum.s())) == 0
    assert run(app, chord([chain(), add.s(1, 1), chain(), add.s(2, 2)], body=xsum.s())) == 6


def test_a_one_task_group_in_a_chain_is_that_task(app: Celery, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    assert run(app, chain(group(add.s(0, 0)), add.s(-1))) == -1
    assert run(app, chain(add.s(1, 1), group(add.s(1)))) == 3


def test_a_group_of_one_chain_ending_in_a_group_has_that_groups_result(
    app: Celery, tasks: dict[str, Any]
) -> None:
    add = tasks["add"]
    assert run(app, group(add.s(1, 2) | group(add.s(1), add.s(2)))) == [4, 5]


# --------------------------------------------------------------------------- frozen ids


def test_freezing_a_chain_gives_it_its_last_tasks_id(app: Celery, tasks: dict[str, Any]) -> None:
    add = tasks["add"]
    last = add.s(2).set(task_id="42")
    workflow = add.s(4) | last
    assert workflow.id is None
    workflow.freeze(last.id)
    assert workflow.id == "42"


def test_a_chain_with_a_task_id_as_chord_body(app: Celery, tasks: dict[str, Any]) -> None:
    """The chain's id is its last task's; freezing first changes nothing (Celery #8890)."""
    add = tasks["add"]
    body = chain(
        add.si(1, 0),
        group(add.si(1, 1), add.si(1, 2)),
        add.si(2, 2) | add.si(3, 3),
        task_id="the-body",
    )
    workflow = chord([add.si(1, 1), add.si(1, 2)], body)
    workflow.freeze()
    result = workflow.apply_async()
    assert result.id == "the-body"
    drain(app)
    assert result.get(timeout=1) == 6


def test_on_error_returns_the_signature_not_the_errback(app: Celery, tasks: dict[str, Any]) -> None:
    add, identity = tasks["add"], tasks["identity"]
    workflow = chain(group(add.s(1, 2), add.s(3, 4)), tasks["xsum"].s())
    assert workflow.on_error(identity.si("failed")) is workflow
    assert run(app, workflow) == 10


def test_a_frozen_chord_sent_again_calls_its_body_again(app: Celery, tasks: dict[str, Any]) -> None:
    add, record = tasks["add"], tasks["sum_and_record"]
    workflow = chord(group(add.s(1, 2), add.s(3, 4)), record.s())
    workflow.freeze()
    for _ in range(2):
        workflow.apply_async()
        drain(app)
    assert len(tasks["ran"]) == 2


# --------------------------------------------------------------------------- nesting


def test_a_group_ending_a_header_chain_is_one_part(app: Celery, tasks: dict[str, Any]) -> None:
    """A group at the end of a chain in a chord header (or a chord's group body there) is
    one part of the chord: the body gets its list, not its members one by one."""
    identity = tasks["identity"]
    tail = chain(identity.s(42), group(identity.s(), identity.s()))
    assert run(app, chord(group(tail), identity.s())) == [[42, 42]]
    inner = chord([identity.si(4), identity.si(5)], group(identity.s(), identity.s()))
    header = [chain(identity.s(1), group(identity.s(), identity.s())), identity.s(3), inner]
    assert run(app, chord(header, identity.s())) == [[1, 1], 3, [[4, 5], [4, 5]]]


def test_a_failure_before_such_a_group_still_ends_the_chord(app: Celery, tasks: Any) -> None:
    identity = tasks["identity"]

    @app.task(name="s.fail", shared=False)
    def fail(*args: Any) -> None:
        raise ValueError("boom")

    tail = chain(fail.s(1), group(identity.s(), identity.s()))
    result = chord([tail, identity.s(3)], identity.s()).apply_async()
    drain(app)
    assert result.state == states.FAILURE
    assert "boom" in repr(result.result)


def test_task_objects_stand_for_their_signatures(app: Celery, tasks: dict[str, Any]) -> None:
    add, xsum = tasks["add"], tasks["xsum"]
    body = chain(xsum.s(), group(add.s(8), add.s(16)), xsum.s() | add.s(32))
    workflow = chord([add.s(0, 1)], chord([xsum, xsum], body))
    assert run(app, workflow) == 60


def test_a_failed_header_fails_what_follows_a_group_body(app: Celery, tasks: Any) -> None:
    add, xsum = tasks["add"], tasks["xsum"]

    @app.task(name="s.fail2", shared=False)
    def fail(*args: Any) -> None:
        raise ValueError("boom")

    inner = chain(
        chord([add.s(1, 1), fail.s()], group(add.s(1), add.s(2))),
        chord([add.s(1), add.s(2)], xsum.s()),
    )
    result = group(inner, add.s(1, 1))()
    drain(app)
    assert [r.state for r in result.results] == [states.FAILURE, states.SUCCESS]


def test_a_failed_header_calls_the_errbacks_of_a_chain_body(app: Celery, tasks: Any) -> None:
    """``chain.link_error`` puts the errback on every step; when the header fails the
    chain never starts, and its first step's errback is called (as in Celery)."""
    add, xsum = tasks["add"], tasks["xsum"]
    called: list[str] = []

    @app.task(name="s.fail3", shared=False)
    def fail(*args: Any) -> None:
        raise ValueError("boom")

    @app.task(name="s.echo", shared=False)
    def echo(message: str) -> None:
        called.append(message)

    body = chain(xsum.s(), group(add.s(1), add.s(2)), xsum.s())
    body.link_error(echo.si("failed"))
    workflow = chord([add.si(1, 1)], chain(xsum.s(), chord([fail.si(), add.si(1, 2)], body)))
    result = workflow.delay()
    drain(app)
    assert result.state == states.FAILURE
    assert called == ["failed"]


# --------------------------------------------------------------------------- result sets


def test_join_with_timeout_zero_returns_the_results_that_are_ready(
    app: Celery, tasks: dict[str, Any]
) -> None:
    add = tasks["add"]
    sent = [add.delay(i, i) for i in range(3)]
    drain(app)
    fresh = ResultSet([AsyncResult(r.id, app=app) for r in sent])  # nothing read yet
    assert fresh.backend is app.backend
    assert fresh.join_native(timeout=0, interval=30) == [0, 2, 4]
    pending = ResultSet([AsyncResult(sent[0].id, app=app), add.delay(5, 5)])
    with pytest.raises(TimeoutError):
        pending.join(timeout=0)
