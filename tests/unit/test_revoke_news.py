"""The revoke news a consuming child reads after each reserve: a revoke (by id, or by stamp)
written by the client before its task is sent is in the reply of the same round trip that
reserves the task, and the child's intake discards the task for it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from minicelery import Celery
from minicelery.broker import Delivery, OutgoingMessage
from minicelery.broker.redis import RedisBroker
from minicelery.message import MessageOptions, build_message, decode_message
from minicelery.worker.childintake import Admitted, Limits, admit
from minicelery.worker.revokenews import RevokeNews

ACCEPT = frozenset({"application/json"})


def catch_up(news: RevokeNews) -> None:
    """Run the command a child sends behind its reserves, and read its reply."""
    ((command, read),) = news.after_reserve()
    read(news.mailbox.client.execute_command(*command))


def test_the_news_reads_each_revoke_once(app: Celery) -> None:
    news = RevokeNews(app.broker, set())
    app.control.revoke(["a", "b"])
    app.control.revoke_by_stamped_headers({"batch": ["x", "y"]})
    app.control.broadcast("revoke_by_stamped_headers", {"headers": ["batch=z"]})  # the CLI's
    catch_up(news)
    assert news.revoked == {"a", "b"}
    assert news.stamps == {"batch": ["x", "y", "z"]}
    cursor = news.cursor
    catch_up(news)
    assert news.cursor == cursor  # nothing new: nothing read
    app.control.revoke("c")
    catch_up(news)
    assert news.revoked == {"a", "b", "c"}


def test_the_news_comes_with_the_reserve_that_takes_the_task(app: Celery) -> None:
    broker: RedisBroker = app.broker  # type: ignore[assignment]
    news = RevokeNews(broker, set())
    app.control.revoke("doomed")
    broker.publish([OutgoingMessage("celery", b"task", 0)])
    got: list[Delivery] = []
    for _ in range(2):  # the first may only load the reserve script
        got = got or broker.settle_and_reserve([], "w/1", ["celery"], 1, (), news.after_reserve())
    assert [d.data for d in got] == [b"task"]
    assert news.revoked == {"doomed"}


def test_a_message_with_a_revoked_stamp_is_discarded(app: Celery) -> None:
    @app.task(name="t.record")
    def record() -> str:
        return "ran"

    def delivery(stamp: str) -> Delivery:
        headers = {"stamped_headers": ["batch"], "stamps": {"batch": stamp}}
        options = MessageOptions(str(uuid.uuid4()), "celery", headers=headers)
        return Delivery("1-1", "celery", build_message("t.record", (), {}, options).encode())

    stamps: dict[str, Any] = {"batch": ["doomed"]}
    doomed = delivery("doomed")
    assert admit(app, doomed, ACCEPT, Limits(), set(), stamps=stamps) is None
    assert app.AsyncResult(_id_of(doomed)).state == "REVOKED"
    kept = admit(app, delivery("kept"), ACCEPT, Limits(), set(), stamps=stamps)
    assert isinstance(kept, Admitted)


def test_the_news_starts_a_little_before_the_child(app: Celery) -> None:
    app.control.revoke("old")  # before the worker: its main process forwards it
    news = RevokeNews(app.broker, set())
    assert int(news.cursor.split("-")[0]) <= time.time() * 1000
    catch_up(news)
    assert news.revoked == {"old"}


def _id_of(delivery: Delivery) -> str:
    return decode_message(delivery.data).id


def test_the_main_process_word_replaces_what_the_news_said(app: Celery) -> None:
    news = RevokeNews(app.broker, set(), "w@host")
    app.control.revoke_by_stamped_headers({"batch": "a"})
    app.control.revoke_by_stamped_headers({"batch": "elsewhere"}, destination=["other@host"])
    catch_up(news)
    assert news.stamps == {"batch": ["a"]}  # not the revoke for another worker
    (news_id,) = news.heard
    news.forward({}, [news_id])  # obeyed, then cleared in the main process
    assert news.stamps == {}
    app.control.revoke_by_stamped_headers({"batch": "b"})
    early = RevokeNews(app.broker, set(), "w@host")
    early.forward({"batch": ["a"]}, [news_id])  # its word came before it read the news
    catch_up(early)
    assert early.stamps == {"batch": ["a", "b"]}
    early.forward({}, [])
    assert early.stamps == {"batch": ["b"]}  # "b": not obeyed yet, still counts
