"""``Task.replace()`` and ``Task.add_to_chord()``, run through the worker's executor on
memory:// (the shapes of Celery's integration tests for them)."""

from __future__ import annotations

from typing import Any

import pytest

from minicelery import Celery, Task, chain, chord, group, states
from minicelery.exceptions import Ignore, ImproperlyConfigured
from minicelery.message import decode_message
from minicelery.worker.executor import execute_message
from tests.unit.conftest import ACCEPT_JSON
from tests.unit.test_canvas import drain


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    """The tasks of Celery's integration tests for replace, on the test's app; ``echoed``
    lists what the ``echo`` task was given, in order."""
    found = _plain_tasks(app)
    found.update(_replacing_tasks(app, found))
    found.update(_second_order_tasks(app, found))
    return found


def _plain_tasks(app: Celery) -> dict[str, Any]:
    echoed: list[Any] = []

    @app.task(name="r.add", shared=False)
    def add(x: Any, y: Any) -> Any:
        return x + y

    @app.task(name="r.identity", shared=False)
    def identity(value: Any) -> Any:
        return value

    @app.task(name="r.tsum", shared=False)
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="r.fail", shared=False)
    def fail(*args: Any) -> None:
        raise ValueError("expected")

    @app.task(name="r.echo", shared=False)
    def echo(message: Any) -> None:
        echoed.append(message)

    @app.task(name="r.nesting", bind=True, shared=False)
    def nesting(self: Any, replacements: int, seen: list[int] | None = None) -> Any:
        seen = [*(seen or []), self.request.replaced_task_nesting]
        if replacements:
            return self.replace(nesting.s(replacements - 1, seen))
        return seen

    return _tasks_in(locals())


def _replacing_tasks(app: Celery, t: dict[str, Any]) -> dict[str, Any]:
    add, identity, fail, echo = t["add"], t["identity"], t["fail"], t["echo"]

    @app.task(name="r.add_replaced", bind=True, shared=False)
    def add_replaced(self: Any, x: int, y: int) -> Any:
        raise self.replace(add.s(x, y))

    @app.task(name="r.fail_replaced", bind=True, shared=False)
    def fail_replaced(self: Any, *args: Any) -> Any:
        raise self.replace(fail.si(*args))

    @app.task(name="r.replace_with_chain", bind=True, shared=False)
    def replace_with_chain(self: Any, *args: Any, link_msg: Any = None) -> Any:
        inner = chain(identity.s(*args), identity.s())
        inner.link(echo.si(link_msg) if link_msg is not None else echo.s())
        return self.replace(inner)

    @app.task(name="r.replace_with_chain_which_raises", bind=True, shared=False)
    def replace_with_chain_which_raises(self: Any, *args: Any, link_msg: Any = None) -> Any:
        inner = chain(identity.s(*args), fail.s())
        inner.link_error(echo.si(link_msg))
        return self.replace(inner)

    @app.task(name="r.replace_with_empty_chain", bind=True, shared=False)
    def replace_with_empty_chain(self: Any, *_: Any) -> Any:
        return self.replace(chain())

    @app.task(name="r.replace_with_group_chain", bind=True, shared=False)
    def replace_with_group_chain(self: Any) -> Any:
        return self.replace(chain(add.s(1, 2), group(add.s(1), add.s(1))))

    return _tasks_in(locals())


def _second_order_tasks(app: Celery, t: dict[str, Any]) -> dict[str, Any]:
    add, echo = t["add"], t["echo"]

    @app.task(name="r.add_to_all", bind=True, shared=False)
    def add_to_all(self: Any, nums: list[int], val: int) -> Any:
        raise self.replace(group(*[add.s(num, val) for num in nums]))

    @app.task(name="r.add_to_all_to_chord", bind=True, shared=False)
    def add_to_all_to_chord(self: Any, nums: list[int], val: int) -> int:
        for num in nums:
            self.add_to_chord(add.s(num, val))
        return 0

    @app.task(name="r.add_chord_to_chord", bind=True, shared=False)
    def add_chord_to_chord(self: Any, nums: list[int], val: int) -> int:
        self.add_to_chord(group([add.s(num, val) for num in nums]) | t["tsum"].s())
        return 0

    @app.task(name="r.second_order1", bind=True, shared=False)
    def second_order1(self: Any, state: bool = False) -> Any:
        if state:
            echo.delay("Out A")
            return None
        echo.delay("In A")
        raise self.replace(chain(second_order2.s(), second_order1.si(state=True)))

    @app.task(name="r.second_order2", bind=True, shared=False)
    def second_order2(self: Any, state: bool = False) -> Any:
        if state:
            echo.delay("Out B")
            return None
        echo.delay("In B")
        raise self.replace(chain(echo.si("In/Out C"), second_order2.si(state=True)))

    return _tasks_in(locals())


def _tasks_in(names: dict[str, Any]) -> dict[str, Any]:
    """The tasks a helper above defined (and the list ``echo`` fills), by name."""
    return {k: v for k, v in names.items() if k == "echoed" or isinstance(v, Task)}


def run(app: Celery, result: Any) -> Any:
    drain(app)
    return result.get(timeout=1)


# --------------------------------------------------------------------------- a task alone


def test_the_replacement_fills_the_replaced_tasks_result(app: Celery, tasks: Any) -> None:
    assert run(app, tasks["add_replaced"].delay(2, 3)) == 5
    assert run(app, tasks["replace_with_chain"].si(42).delay()) == 42
    assert tasks["echoed"] == [42]  # the inner chain's own link, once


def test_the_replaced_task_itself_stores_nothing_and_calls_no_callback(
    app: Celery, tasks: Any
) -> None:
    sig = tasks["add_replaced"].si(1, 1)
    sig.link(tasks["echo"].s())
    result = sig.delay()
    app.broker.move_due(4e9)
    (delivery,) = app.broker.reserve("unit", ["celery"], 1)
    outcome = execute_message(app, decode_message(delivery.data), "h", "celery", ACCEPT_JSON)
    assert outcome.state == states.IGNORED
    assert result.state == states.PENDING and tasks["echoed"] == []
    assert run(app, result) == 2
    assert tasks["echoed"] == [2]  # the link moved to the replacement, called once


def test_replacing_with_an_empty_chain_fails_the_task(app: Celery, tasks: Any) -> None:
    result = chain(tasks["identity"].s(1), tasks["replace_with_empty_chain"].s()).delay()
    drain(app)
    with pytest.raises(ImproperlyConfigured, match="Cannot replace with an empty chain"):
        result.get(timeout=1)


def test_a_replacement_may_not_be_part_of_a_chord(app: Celery, tasks: Any) -> None:
    @app.task(name="r.bad", bind=True, shared=False)
    def bad(self: Any) -> Any:
        return self.replace(tasks["add"].s(1, 1).set(chord={"task": "r.tsum"}))

    with pytest.raises(ImproperlyConfigured, match="must not be part of a chord"):
        run(app, bad.delay())


def test_replace_in_eager_mode_returns_the_replacements_value(make_app: Any) -> None:
    app = make_app(task_always_eager=True)

    @app.task(name="r.inc", shared=False)
    def inc(x: int) -> int:
        return x + 1

    @app.task(name="r.eager_replaced", bind=True, shared=False)
    def eager_replaced(self: Any, x: int) -> Any:
        return self.replace(chain(inc.s(x), inc.s()))

    @app.task(name="r.eager_by_group", bind=True, shared=False)
    def eager_by_group(self: Any, x: int) -> Any:
        return self.replace(group(inc.s(x), inc.s(x + 1)))

    assert eager_replaced.delay(1).get() == 3
    assert chain(inc.s(0), eager_replaced.s(), inc.s()).delay().get() == 4
    assert eager_by_group.delay(1).get() == [2, 3]


# --------------------------------------------------------------------------- chains


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_chain_child_replaced_with_chain(app: Celery, tasks: Any, where: str) -> None:
    identity, replace_with_chain = tasks["identity"], tasks["replace_with_chain"]
    shapes = {
        "first": chain(replace_with_chain.si(42), identity.s()),
        "middle": chain(identity.s(42), replace_with_chain.s(), identity.s()),
        "last": chain(identity.s(42), replace_with_chain.s()),
    }
    assert run(app, shapes[where].delay()) == 42


def test_chain_replaced_with_a_chain_and_callbacks(app: Celery, tasks: Any) -> None:
    c = chain(
        tasks["identity"].s("Hello "),
        tasks["replace_with_chain"].s(link_msg="inner"),
        tasks["add"].s("world"),
    )
    c.link(tasks["echo"].s())
    assert run(app, c.delay()) == "Hello world"
    assert sorted(tasks["echoed"]) == ["Hello world", "inner"]


def test_chain_replaced_with_a_failing_chain_calls_both_errbacks(app: Celery, tasks: Any) -> None:
    c = chain(
        tasks["identity"].s("Hello "),
        tasks["replace_with_chain_which_raises"].s(link_msg="inner"),
        tasks["add"].s("world"),
    )
    c.link_error(tasks["echo"].si("outer"))
    result = c.delay()
    drain(app)
    with pytest.raises(ValueError):
        result.get(timeout=1)
    assert sorted(tasks["echoed"]) == ["inner", "outer"]


def test_links_of_a_replaced_chain_child_are_called_once(app: Celery, tasks: Any) -> None:
    child = tasks["add_replaced"].si(42, 1337)
    child.link(tasks["echo"].si("cb"))
    assert run(app, chain(child, tasks["identity"].s()).delay()) == 42 + 1337
    failing = tasks["fail_replaced"].si()
    failing.link_error(tasks["echo"].si("eb"))
    result = chain(failing, tasks["identity"].si(42)).delay()
    drain(app)
    with pytest.raises(ValueError):
        result.get(timeout=1)
    assert tasks["echoed"] == ["cb", "eb"]


def test_second_order_replace_keeps_the_order(app: Celery, tasks: Any) -> None:
    result = (tasks["second_order1"].si() | tasks["add"].si(4, 2)).delay()
    assert run(app, result) == 6
    assert tasks["echoed"] == ["In A", "In B", "In/Out C", "Out B", "Out A"]


def test_replace_with_a_chain_ending_in_a_group(app: Celery, tasks: Any) -> None:
    assert run(app, tasks["replace_with_group_chain"].delay()) == [4, 4]


# --------------------------------------------------------------------------- groups, chords


def test_group_members_replaced(app: Celery, tasks: Any) -> None:
    identity, replace_with_chain = tasks["identity"], tasks["replace_with_chain"]
    g = group(identity.s(42), replace_with_chain.s(1337), identity.s(31337))
    assert run(app, g.delay()) == [42, 1337, 31337]
    g = group(tasks["add_replaced"].si(42, 1337), identity.si(31337))
    g.link(tasks["echo"].si("cb"))
    assert run(app, g.delay()) == [42 + 1337, 31337]
    assert tasks["echoed"] == [1337, "cb"]


def test_replacing_with_a_group_keeps_the_group_order(app: Celery, tasks: Any) -> None:
    add_to_all = tasks["add_to_all"]
    g = group([add_to_all.s([2, 1], 1), add_to_all.s([4, 3], 1)] * 3)
    assert run(app, g.delay()) == [[3, 2], [5, 4]] * 3


def test_chord_header_and_body_replaced(app: Celery, tasks: Any) -> None:
    identity, replace_with_chain = tasks["identity"], tasks["replace_with_chain"]
    header = chord((identity.s(42), replace_with_chain.s(1337), identity.s(7)), identity.s())
    assert run(app, header.delay()) == [42, 1337, 7]
    body = chord(identity.s(42), chain(identity.s(), replace_with_chain.s(), identity.s()))
    assert run(app, body.delay()) == [42]
    by_group = chord((tasks["add_to_all"].s([1, 2], 1), identity.s(7)), identity.s())
    assert run(app, by_group.delay()) == [[2, 3], 7]


def test_replaced_nested_chord(app: Celery, tasks: Any) -> None:
    add, add_replaced, add_to_all, tsum = (
        tasks[name] for name in ("add", "add_replaced", "add_to_all", "tsum")
    )
    c1 = chord(
        [
            chord([add.s(1, 2), add_replaced.s(3, 4)], add_to_all.s(5)) | tsum.s(),
            chord([add_replaced.s(6, 7), add.s(0, 0)], add_to_all.s(8)) | tsum.s(),
        ],
        add_to_all.s(9),
    )
    assert run(app, c1()) == [29, 38]


def test_add_to_chord(app: Celery, tasks: Any) -> None:
    c = group([tasks["add_to_all_to_chord"].s([1, 2, 3], 4)]) | tasks["identity"].s()
    assert sorted(run(app, c())) == [0, 5, 6, 7]
    c = group([tasks["add_chord_to_chord"].s([1, 2, 3], 4)]) | tasks["identity"].s()
    assert sorted(run(app, c())) == [0, 5 + 6 + 7]


def test_add_to_chord_outside_a_chord_is_an_error(app: Celery, tasks: Any) -> None:
    result = tasks["add_to_all_to_chord"].delay([1], 1)
    drain(app)
    with pytest.raises(ValueError, match="not member of any chord"):
        result.get(timeout=1)


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("replacements", [0, 1, 3])
def test_replaced_task_nesting_increments(app: Celery, tasks: Any, replacements: int) -> None:
    result = tasks["nesting"].delay(replacements)
    assert run(app, result) == list(range(replacements + 1))


def test_received_messages_carry_the_nesting(app: Celery, tasks: Any) -> None:
    result = tasks["nesting"].delay(2)
    levels = []
    while True:
        app.broker.move_due(4e9)
        deliveries = app.broker.reserve("unit", ["celery"], 10)
        if not deliveries:
            break
        for delivery in deliveries:
            message = decode_message(delivery.data)
            levels.append(message.replaced_task_nesting)
            execute_message(app, message, "h", "celery", ACCEPT_JSON)
        app.broker.ack("unit", [d.tag for d in deliveries])
    assert result.get(timeout=1) == [0, 1, 2]
    assert levels == [0, 1, 2]


def test_added_parts_extend_the_chord_until_it_settles(app: Celery) -> None:
    backend = app.backend
    assert backend.chord_part_return("g", 0, 2, [states.SUCCESS, "a"], "t0") is None
    assert backend.add_to_chord("g") == 1  # index 2: after the header's two
    assert backend.add_to_chord("g") == 2  # index 3
    assert backend.chord_part_return("g", 1, 2, [states.SUCCESS, "b"], "t1") is None
    assert backend.chord_part_return("g", 3, 2, [states.SUCCESS, "d"], "t3") is None
    parts = backend.chord_part_return("g", 2, 2, [states.SUCCESS, "c"], "t2")
    assert [value for _, value in parts] == ["a", "b", "c", "d"]
    backend.chord_settle("g")
    assert not backend.client.exists(backend.keys.chord_added("g"))


def test_a_task_raising_ignore_leaves_no_state_and_no_callbacks(app: Celery, tasks: Any) -> None:
    @app.task(name="r.ignored", shared=False)
    def ignored() -> None:
        raise Ignore()

    sig = ignored.si()
    sig.link(tasks["echo"].si("callback"))
    sig.link_error(tasks["echo"].si("errback"))
    result = sig.delay()
    drain(app)
    assert result.state == states.PENDING
    assert tasks["echoed"] == []


def test_the_replacement_keeps_the_workflows_root_and_the_tasks_parent(
    app: Celery, tasks: Any
) -> None:
    seen: list[tuple[str, str, str]] = []

    @app.task(name="r.ids", bind=True, shared=False)
    def ids(self: Any, *_: Any) -> None:
        seen.append((self.request.id, self.request.root_id, self.request.parent_id))

    @app.task(name="r.replaced_by_ids", bind=True, shared=False)
    def replaced_by_ids(self: Any, *_: Any) -> Any:
        return self.replace(chain(ids.s(), ids.s()))

    result = chain(tasks["identity"].s(1), replaced_by_ids.s(), ids.s()).delay()
    drain(app)
    replaced = result.parent
    root = replaced.parent.id
    assert result.get(timeout=1) is None
    (first, _, first_parent), (second, _, second_parent), (last, _, last_parent) = seen
    assert {root_id for _, root_id, _ in seen} == {root}
    assert (second, last) == (replaced.id, result.id)  # the replacement has the task's id
    assert (first_parent, second_parent, last_parent) == (root, first, second)
