"""The guide's main examples, run against a worker of ``tasks`` and printed as
``<expression>  ->  <result>``. Start ``minicelery -A tasks worker`` first (see README.md).
"""

from __future__ import annotations

from typing import Any

from minicelery import chain, chord, group, signature
from minicelery.exceptions import ChordError
from tasks import add, mul, raising_task, tsum, xsum

TIMEOUT = 30


def show(expression: str, value: Any) -> None:
    print(f"{expression}  ->  {value!r}")


def signatures() -> None:
    show("signature('tasks.add', args=(2, 2), countdown=10)",
         signature("tasks.add", args=(2, 2), countdown=10))
    show("add.s(2, 2).options", add.s(2, 2).set(countdown=1).options)
    show("add.s(2).delay(4).get()", add.s(2).delay(4).get(timeout=TIMEOUT))
    show("~add.s(2, 2)", ~add.s(2, 2))
    show("add.s(2, 2)()  # called here", add.s(2, 2)())
    show("add.apply_async((2, 2), link=add.s(16)).get()",
         add.apply_async((2, 2), link=add.s(16)).get(timeout=TIMEOUT))


def chains() -> None:
    res = chain(add.s(2, 2), add.s(4), add.s(8))()
    show("chain(add.s(2, 2), add.s(4), add.s(8))().get()", res.get(timeout=TIMEOUT))
    res = (add.s(2, 2) | add.s(4) | add.s(8))()
    show("(add.s(2, 2) | add.s(4) | add.s(8))().get()", res.get(timeout=TIMEOUT))
    show("res.parent.get()", res.parent.get(timeout=TIMEOUT))
    show("res.parent.parent.get()", res.parent.parent.get(timeout=TIMEOUT))
    res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
    show("(add.si(2, 2) | add.si(4, 4) | add.si(8, 8))().get()", res.get(timeout=TIMEOUT))
    c1 = add.s(4) | mul.s(8)
    show("(add.s(4) | mul.s(8))(16).get()", c1(16).get(timeout=TIMEOUT))
    res = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
    show("(add.s(4, 4) | group(add.si(i, i) for i in range(10)))().get()",
         res.get(timeout=TIMEOUT))
    show("res.parent.get()", res.parent.get(timeout=TIMEOUT))


def groups() -> None:
    res = group(add.s(2, 2), add.s(4, 4))()
    show("group(add.s(2, 2), add.s(4, 4))().get()", res.get(timeout=TIMEOUT))
    res = group(add.s(i, i) for i in range(10))()
    show("group(add.s(i, i) for i in range(10))().get()", res.get(timeout=TIMEOUT))
    show("res.ready(), res.successful(), res.completed_count()",
         (res.ready(), res.successful(), res.completed_count()))


def chords() -> None:
    res = chord((add.s(i, i) for i in range(10)), xsum.s())()
    show("chord((add.s(i, i) for i in range(10)), xsum.s())().get()", res.get(timeout=TIMEOUT))
    res = (group(add.s(i, i) for i in range(10)) | xsum.s())()
    show("(group(add.s(i, i) for i in range(10)) | xsum.s())().get()", res.get(timeout=TIMEOUT))
    header = [add.s(i, i) for i in range(100)]
    show("chord(header)(tsum.s()).get()", chord(header)(tsum.s()).get(timeout=TIMEOUT))
    res = chord([add.s(4, 4), raising_task.s(), add.s(8, 8)], tsum.s()).apply_async()
    try:
        res.get(timeout=TIMEOUT, follow_parents=False)
    except ChordError as exc:
        show("chord([add.s(4, 4), raising_task.s(), add.s(8, 8)], tsum.s())", exc)


def maps_and_chunks() -> None:
    show("~xsum.map([range(10), range(100)])", ~xsum.map([range(10), range(100)]))
    show("~add.starmap(zip(range(10), range(10)))", ~add.starmap(zip(range(10), range(10))))
    res = add.chunks(zip(range(100), range(100)), 10)()
    show("add.chunks(zip(range(100), range(100)), 10)().get()", res.get(timeout=TIMEOUT))
    res = add.chunks(zip(range(10), range(10)), 5).group().skew(start=1, stop=10)()
    show("add.chunks(..., 5).group().skew(start=1, stop=10)().get()", res.get(timeout=TIMEOUT))


if __name__ == "__main__":
    for section in (signatures, chains, groups, chords, maps_and_chunks):
        print(f"# {section.__name__}")
        section()
