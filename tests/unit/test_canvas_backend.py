"""The chord counter of the Redis result backend (one Lua script), on memory://."""

from __future__ import annotations

from minicelery import Celery, states


def test_parts_come_back_in_order_once_when_the_last_arrives(app: Celery) -> None:
    backend = app.backend
    assert backend.chord_part_return("g", 2, 3, [states.SUCCESS, "c"], "t2") is None
    assert backend.chord_part_return("g", 0, 3, [states.SUCCESS, "a"], "t0") is None
    assert backend.chord_part_return("g", 0, 3, [states.SUCCESS, "a"], "t0") is None  # again
    parts = backend.chord_part_return("g", 1, 3, [states.SUCCESS, "b"], "t1")
    assert parts == [[states.SUCCESS, "a"], [states.SUCCESS, "b"], [states.SUCCESS, "c"]]
    for index in (0, 2):  # the other header tasks run again after the chord completed
        again = backend.chord_part_return("g", index, 3, [states.SUCCESS, "x"], f"t{index}")
        assert again is None
    backend.chord_settle("g")
    assert backend.chord_part_return("g", 1, 3, [states.SUCCESS, "x"], "t1") is None


def test_the_claiming_task_gets_the_parts_again_until_the_chord_is_settled(app: Celery) -> None:
    """The process that completed the chord died before sending the body: the same task,
    run again or ended as lost, sends it."""
    backend = app.backend
    backend.chord_part_return("g", 0, 2, [states.SUCCESS, 1], "t0")
    first = backend.chord_part_return("g", 1, 2, [states.SUCCESS, 2], "t1")
    again = backend.chord_part_return("g", 1, 2, [states.FAILURE, {}, "t1"], "t1")
    assert first == again == [[states.SUCCESS, 1], [states.SUCCESS, 2]]  # the first parts
    assert backend.chord_part_return("g", 0, 2, [states.SUCCESS, 1], "t0") is None
    backend.chord_settle("g")
    assert backend.chord_part_return("g", 1, 2, [states.SUCCESS, 2], "t1") is None


def test_chord_keys_expire_with_results(make_app: object) -> None:
    app = make_app(result_expires=60)  # type: ignore[operator]
    backend = app.backend
    backend.chord_part_return("h", 0, 2, [states.SUCCESS, 1], "t0")
    client = backend.client
    assert 0 < client.pttl(backend.keys.chord_parts("h")) <= 60_000
    backend.chord_part_return("h", 1, 2, [states.SUCCESS, 2], "t1")
    assert 0 < client.pttl(backend.keys.chord_claim("h")) <= 60_000
    assert 0 < client.pttl(backend.keys.chord_parts("h")) <= 60_000  # kept until settled
    backend.chord_settle("h")
    assert not client.exists(backend.keys.chord_parts("h"))


def test_get_many_reads_records_in_bulk(app: Celery) -> None:
    backend = app.backend
    backend.store("a", {"status": states.SUCCESS, "result": 1, "task_id": "a"})
    metas = backend.get_many(["a", "missing"])
    assert [m["status"] for m in metas] == [states.SUCCESS, states.PENDING]
    assert metas[0]["result"] == 1
