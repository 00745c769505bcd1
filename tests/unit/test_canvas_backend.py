"""The chord counter of the Redis result backend (one Lua script), on memory://."""

from __future__ import annotations

from minicelery import Celery, states


def test_parts_come_back_in_order_once_when_the_last_arrives(app: Celery) -> None:
    backend = app.backend
    assert backend.chord_part_return("g", 2, 3, [states.SUCCESS, "c"]) is None
    assert backend.chord_part_return("g", 0, 3, [states.SUCCESS, "a"]) is None
    assert backend.chord_part_return("g", 0, 3, [states.SUCCESS, "a"]) is None  # again
    parts = backend.chord_part_return("g", 1, 3, [states.SUCCESS, "b"])
    assert parts == [[states.SUCCESS, "a"], [states.SUCCESS, "b"], [states.SUCCESS, "c"]]
    for index in range(3):  # a header task run again after the chord completed
        assert backend.chord_part_return("g", index, 3, [states.SUCCESS, "x"]) is None


def test_chord_keys_expire_with_results(make_app: object) -> None:
    app = make_app(result_expires=60)  # type: ignore[operator]
    backend = app.backend
    backend.chord_part_return("h", 0, 2, [states.SUCCESS, 1])
    client = backend.client
    assert 0 < client.pttl(backend.keys("chord", "h")) <= 60_000
    backend.chord_part_return("h", 1, 2, [states.SUCCESS, 2])
    assert not client.exists(backend.keys("chord", "h"))  # parts dropped once done
    assert 0 < client.pttl(backend.keys("chord", "h", "done")) <= 60_000


def test_get_many_reads_records_in_bulk(app: Celery) -> None:
    backend = app.backend
    backend.store("a", {"status": states.SUCCESS, "result": 1, "task_id": "a"})
    metas = backend.get_many(["a", "missing"])
    assert [m["status"] for m in metas] == [states.SUCCESS, states.PENDING]
    assert metas[0]["result"] == 1
