"""Canvas work-flows on a real redis-server and a real prefork worker (two children): the
examples of Celery's "Canvas: Designing Work-flows" guide and the properties behind them —
chains advanced by the workers, groups published in one round, chords counted in Redis and
completed by whichever worker finishes the last header task, with no client waiting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from minicelery import Celery, GroupResult, chain, chord, group, signature, states
from minicelery.exceptions import ChordError, TaskRevokedError
from minicelery.result import AsyncResult, ResultBase, result_from_tuple
from tests.cluster_mode import cluster_wanted
from tests.helpers import (
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    WorkerFactory,
    pointed_at,
    wait_until,
)
from tests.integration.apps import canvas_tasks as ct

APP = "tests.integration.apps.canvas_tasks"
T = 20  # generous timeout for a get() on a loaded machine


@pytest.fixture
def canvas_app(redis_server: RedisServer, key_prefix: str) -> Iterator[Celery]:
    with pointed_at(ct.app, redis_server, key_prefix) as app:
        yield app


@pytest.fixture
def worker(worker_factory: WorkerFactory, canvas_app: Celery) -> ManagedProcess:
    return worker_factory(APP, concurrency=2)


def run_client(code: str, redis_server: RedisServer, key_prefix: str) -> str:
    """Run ``code`` in a fresh Python process (``app``: a Celery app on the test's Redis
    that has registered no task at all) and return its output."""
    prelude = textwrap.dedent(f"""
        from minicelery import Celery, signature
        app = Celery("client", broker={redis_server.url!r}, backend={redis_server.url!r},
                     key_prefix={key_prefix!r})
    """)
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --------------------------------------------------------------------------- signatures


def test_signatures_partials_and_callbacks(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    assert ct.add.s(2).delay(4).get(timeout=T) == 6
    sig = signature("tests.integration.apps.canvas_tasks.add", args=(2, 2), countdown=0.1)
    assert sig.apply_async().get(timeout=T) == 4
    assert ~ct.add.s(1, 1) == 2
    key = f"{key_prefix}:links"
    assert ct.add.apply_async((2, 2), link=ct.add.s(8) | ct.record_value.s(key)).get(timeout=T) == 4
    linked = ct.add.s(1, 2)
    linked.link(ct.record_value.s(key))
    assert linked.delay().get(timeout=T) == 3
    entries = wait_until(lambda: redis_client.llen(key) == 2 and redis_client.lrange(key, 0, -1))
    assert sorted(entries) == [b"12", b"3"]  # the links were called with the results


def test_errbacks_new_and_old_style(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:errbacks"
    failing = ct.fail.s()
    failing.on_error(ct.on_error.s(key=key))
    failing.link_error(ct.old_style_errback.s(key=key))
    result = failing.apply_async()
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=T)
    entries = wait_until(lambda: redis_client.llen(key) == 2 and redis_client.lrange(key, 0, -1))
    decoded = sorted(e.decode() for e in entries)
    assert f"{result.id}|ValueError('something something')|True" in decoded
    assert result.id in decoded


def test_a_client_without_the_tasks_sends_signature_dicts(
    worker: ManagedProcess, canvas_app: Celery, redis_server: RedisServer, key_prefix: str
) -> None:
    workflow = chain(ct.add.s(2, 2), group(ct.add.s(i) for i in range(3)), ct.xsum.s())
    out = run_client(
        f"""
        import json
        sig = signature(json.loads({json.dumps(workflow)!r}), app=app)
        print(type(sig).__name__, sig.apply_async().get(timeout=30))
        """,
        redis_server,
        key_prefix,
    )
    assert out.split() == ["_chain", str(4 + 5 + 6)]


# --------------------------------------------------------------------------- chains


def test_chain_results_and_parents(worker: ManagedProcess, canvas_app: Celery) -> None:
    result = (ct.add.s(2, 2) | ct.add.s(4) | ct.add.s(8))()
    assert result.get(timeout=T) == 16
    assert result.parent.get(timeout=T) == 8
    assert result.parent.parent.get(timeout=T) == 4
    assert chain(ct.add.s(4), ct.mul.s(8))(16).get(timeout=T) == 160
    assert (ct.add.si(2, 2) | ct.add.si(4, 4) | ct.add.si(8, 8))().get(timeout=T) == 16


@pytest.mark.timeout(120)
def test_chain_of_100_links(worker: ManagedProcess, canvas_app: Celery) -> None:
    result = chain(ct.add.s(0, 1), *(ct.add.s(1) for _ in range(99))).apply_async()
    assert result.get(timeout=60) == 100
    node, depth = result, 0
    while node.parent is not None:
        node, depth = node.parent, depth + 1
    assert depth == 99 and node.get(timeout=T) == 1


def test_chain_failure_stops_it(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:after"
    result = chain(ct.add.s(1, 1), ct.fail.s(), ct.collect_into.s(key), ct.add.s(1)).apply_async()
    with pytest.raises(ValueError, match="something something"):
        result.get(timeout=T)
    # get() may raise as soon as fail() is stored (a failed parent, as in Celery). On one
    # server the links after it are stored with it, in one script; on a cluster they live
    # on other shards and follow it within milliseconds.
    links = (result, result.parent, result.parent.parent)
    if cluster_wanted():
        wait_until(lambda: all(link.state == states.FAILURE for link in links), timeout=5)
    assert [link.state for link in links] == [states.FAILURE] * 3
    assert result.parent.parent.parent.get(timeout=T) == 2
    assert redis_client.llen(key) == 0  # nothing after the failure ran


# --------------------------------------------------------------------------- groups


def test_group_result_api(worker: ManagedProcess, canvas_app: Celery) -> None:
    result = group(ct.add.s(i, i) for i in range(10))()
    assert isinstance(result, GroupResult) and len(result.children) == 10
    assert result.get(timeout=T) == [i + i for i in range(10)]
    assert result.ready() and result.successful() and not result.failed()
    assert not result.waiting() and result.completed_count() == 10
    assert result.join(timeout=T) == [i + i for i in range(10)]
    result.save()
    restored = canvas_app.GroupResult.restore(result.id)
    assert restored is not None and restored.get(timeout=T) == [i + i for i in range(10)]
    partial = group(ct.add.s(2, 2), ct.fail.s(), ct.add.s(4, 4)).apply_async()
    with pytest.raises(ValueError):
        partial.get(timeout=T)  # raises at the failure, maybe before the last one finished
    wait_until(partial.ready, T)
    assert partial.failed() and partial.completed_count() == 2
    assert partial.get(timeout=T, propagate=False)[::2] == [4, 8]


@pytest.mark.timeout(180)
def test_group_of_10000_is_one_publish_and_completes(
    worker: ManagedProcess, canvas_app: Celery
) -> None:
    broker = canvas_app.broker
    batches: list[int] = []
    publish = broker.publish

    def counting(messages: Any) -> None:
        batches.append(len(messages))
        publish(messages)

    broker.publish = counting  # type: ignore[method-assign]
    try:
        result = group(ct.add.s(i, 1) for i in range(10_000)).apply_async()
    finally:
        del broker.publish
    assert batches == [10_000]  # one pipelined publish for the whole group
    assert result.get(timeout=150) == [i + 1 for i in range(10_000)]
    assert result.completed_count() == 10_000


def test_group_revoke(worker: ManagedProcess, canvas_app: Celery) -> None:
    result = group(ct.add.s(i, i).set(countdown=2) for i in range(5))()
    assert result.waiting()
    result.revoke()
    values = result.join(timeout=T, propagate=False)
    assert all(isinstance(value, TaskRevokedError) for value in values), values
    assert [r.state for r in result.results] == [states.REVOKED] * 5
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)


# --------------------------------------------------------------------------- chords


def test_chord_with_retried_header_tasks_counts_each_once(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    runs, key = f"{key_prefix}:runs", f"{key_prefix}:body"
    header = [ct.retry_once.s(i, runs) for i in range(10)]
    result = chord(header, ct.collect_into.s(key)).apply_async()
    assert result.get(timeout=T) == 10
    assert redis_client.llen(runs) == 20  # every header task ran twice
    assert redis_client.lrange(key, 0, -1) == [b"10"]  # the body, once
    assert redis_client.lrange(f"{key}:values", 0, -1) == [b"0,1,2,3,4,5,6,7,8,9"]


@pytest.mark.timeout(120)
def test_chord_of_1000_calls_its_body_once_with_ordered_results(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:body"
    result = chord((ct.identity.s(i) for i in range(1000)), ct.collect_into.s(key))()
    assert result.get(timeout=90) == 1000
    assert isinstance(result.parent, GroupResult) and len(result.parent) == 1000
    assert redis_client.lrange(key, 0, -1) == [b"1000"]  # called exactly once
    values = redis_client.lrange(f"{key}:values", 0, -1)[0].decode().split(",")
    assert values == [str(i) for i in range(1000)]
    ttl = redis_client.pttl(canvas_app.backend.keys.chord_claim(result.parent.id))
    assert 0 < ttl <= canvas_app.conf.result_expires * 1000  # chord keys expire


def test_chord_forms_and_empty_header(worker: ManagedProcess, canvas_app: Celery) -> None:
    assert chord((ct.add.s(i, i) for i in range(10)), ct.xsum.s())().get(timeout=T) == 90
    assert (group(ct.add.s(i, i) for i in range(10)) | ct.xsum.s())().get(timeout=T) == 90
    header = [ct.add.s(i, i) for i in range(100)]
    assert chord(header)(ct.tsum.s()).get(timeout=T) == 9900
    assert chord([], ct.identity.s()).apply_async().get(timeout=T) == []


def test_chord_failure_is_a_chord_error(
    worker: ManagedProcess, canvas_app: Celery, redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}:chord-errors"
    body = ct.tsum.s()
    body.link_error(ct.on_error.s(key=key))
    result = chord([ct.add.s(4, 4), ct.fail.s(), ct.add.s(8, 8)], body).apply_async()
    culprit = result.parent.results[1].id
    with pytest.raises(ChordError, match=f"Dependency {culprit} raised ValueError"):
        result.get(timeout=T, follow_parents=False)
    assert result.state == states.FAILURE
    entry = wait_until(lambda: redis_client.lrange(key, 0, -1), timeout=T)[0].decode()
    assert entry.startswith(f'{result.id}|ChordError("Dependency {culprit} raised ValueError(')


def test_chord_completes_after_its_client_exits(
    worker_factory: WorkerFactory, canvas_app: Celery, redis_server: RedisServer, key_prefix: str
) -> None:
    # The client sends the chord by name and exits at once; no worker runs yet.
    out = run_client(
        """
        from minicelery import chord
        name = "tests.integration.apps.canvas_tasks."
        header = [signature(name + "add", args=(i, i), app=app) for i in range(50)]
        result = chord(header, signature(name + "xsum", app=app)).apply_async()
        print(result.id)
        """,
        redis_server,
        key_prefix,
    )
    worker_factory(APP, concurrency=2)
    assert AsyncResult(out.strip(), app=canvas_app).get(timeout=T) == sum(2 * i for i in range(50))


# --------------------------------------------------------------------------- nesting


def test_nested_workflows(worker: ManagedProcess, canvas_app: Celery) -> None:
    add, mul, xsum, tsum = ct.add, ct.mul, ct.xsum, ct.tsum
    chains_in_group = group(add.s(i, i) | mul.s(10) for i in range(5))()
    group_in_chain = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
    becomes_chord = chain(add.s(2, 2), group(add.s(i) for i in range(3)), tsum.s(), mul.s(10))()
    chord_in_chain = chain(add.s(1, 1), chord([add.s(1), add.s(2)], xsum.s()), mul.s(2))()
    chain_of_chords = chain(
        chord([add.s(1, 1), add.s(2, 2)], xsum.s()), chord([add.s(1), add.s(2)], xsum.s())
    )()
    chord_of_chains = chord([add.s(1, 1) | mul.s(2), add.s(2, 2) | mul.s(3)], xsum.s())()
    assert chains_in_group.get(timeout=T) == [i * 20 for i in range(5)]
    assert group_in_chain.get(timeout=T) == [i + i for i in range(10)]
    assert group_in_chain.parent.get(timeout=T) == 8
    assert becomes_chord.get(timeout=T) == 10 * (4 + 5 + 6)
    assert chord_in_chain.get(timeout=T) == 2 * (3 + 4)
    assert chain_of_chords.get(timeout=T) == 7 + 8
    assert chord_of_chains.get(timeout=T) == 4 + 12


def test_map_starmap_and_chunks(worker: ManagedProcess, canvas_app: Celery) -> None:
    assert ~ct.xsum.map([range(10), range(100)]) == [45, 4950]
    assert ~ct.add.starmap(zip(range(10), range(10), strict=True)) == [2 * i for i in range(10)]
    pairs = list(zip(range(100), range(100), strict=True))
    chunked = ct.add.chunks(pairs, 10)()
    assert chunked.get(timeout=T) == [[2 * i for i in range(p, p + 10)] for p in range(0, 100, 10)]
    as_group = ct.add.chunks(pairs[:10], 5).group().skew(start=0, step=0.01)
    assert as_group().get(timeout=T) == [[0, 2, 4, 6, 8], [10, 12, 14, 16, 18]]


# --------------------------------------------------------------------------- results


def test_result_tuples_children_and_collect(worker: ManagedProcess, canvas_app: Celery) -> None:
    workflow = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.xsum.s())()
    rebuilt = result_from_tuple(json.loads(json.dumps(workflow.as_tuple())), canvas_app)
    assert rebuilt.get(timeout=T) == 6
    assert isinstance(rebuilt.parent, GroupResult) and rebuilt.parent.get(timeout=T) == [2, 4]
    result = ct.spawn_group.delay(10)
    values = [v for _, v in result.collect() if not isinstance(v, (ResultBase, list, tuple))]
    assert sorted(values) == [i**2 for i in range(10)]
    assert [type(child).__name__ for child in result.children] == ["GroupResult"]


@pytest.mark.parametrize("acks_late", [False, True], ids=["early-ack", "acks-late"])
def test_a_chord_body_survives_the_death_of_the_process_that_completed_the_chord(
    worker_factory: WorkerFactory, canvas_app: Celery, redis_server: RedisServer,
    key_prefix: str, acks_late: bool,
) -> None:  # fmt: skip
    """The child that completes the chord dies between claiming it and sending the body. With
    an early ack its worker ends the task as lost and sends the body itself; with acks_late
    the redelivered task does. Either way the body runs once, with every header result."""
    worker = worker_factory("tests.integration.apps.chord_crash", concurrency=2)
    options = {"acks_late": True, "reject_on_worker_lost": True} if acks_late else {}
    header = [ct.add.s(i, i).set(**options) for i in range(4)]
    key = f"{key_prefix}:bodies"
    result = chord(header)(ct.collect_into.s(key))
    assert result.get(timeout=T) == 4
    client = redis_server.client()
    crashed_pid = client.get(f"{key_prefix}:planted-crash")
    assert crashed_pid is not None  # the planted crash did happen
    worker.wait_for_line("exited with", timeout=T)  # and the worker saw its child die
    assert int(crashed_pid) not in worker.children()
    worker.stop()  # a warm shutdown: whatever was still to run has run
    assert client.lrange(f"{key}:values", 0, -1) == [b"0,2,4,6"]  # called once, all results
