"""A Flask application that starts a long task and reports its progress.

``POST /longtask`` starts ``tasks.long_task`` and answers ``202 Accepted`` with a ``Location``
header: ``GET /status/<task_id>``, a JSON report of the task's state and progress. ``GET /``
is a page with a button that starts tasks and progress bars that follow them.

    flask --app app run        # from this folder, next to a running worker

Settings (optional) come from ``FLASK_*`` environment variables: ``FLASK_LONGTASK_TOTAL``
(steps per task), ``FLASK_LONGTASK_STEP_SECONDS`` and ``FLASK_STATUS_POLL_MS`` (how often the
page asks for news).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, url_for
from flask.typing import ResponseReturnValue
from tasks import long_task

app = Flask(__name__)
app.config.update(LONGTASK_TOTAL=20, LONGTASK_STEP_SECONDS=0.5, STATUS_POLL_MS=500)
app.config.from_prefixed_env()


@app.get("/")
def index() -> ResponseReturnValue:
    return render_template("index.html", poll_ms=int(app.config["STATUS_POLL_MS"]))


@app.post("/longtask")
def start_long_task() -> ResponseReturnValue:
    task = long_task.apply_async(
        kwargs={
            "total": int(app.config["LONGTASK_TOTAL"]),
            "step_seconds": float(app.config["LONGTASK_STEP_SECONDS"]),
        }
    )
    location = url_for("task_status", task_id=task.id)
    return jsonify({"task_id": task.id}), 202, {"Location": location}


@app.get("/status/<task_id>")
def task_status(task_id: str) -> ResponseReturnValue:
    return jsonify(describe(long_task.AsyncResult(task_id)))


def describe(result: Any) -> dict[str, Any]:
    """The page's view of a task: its state, how far it got, and its result once done.

    A task nobody has picked up yet is ``PENDING`` (as is an unknown id: the result backend
    cannot tell them apart); a failed task's info is its exception.
    """
    # State and info from one read of the backend: ``result.state`` then ``result.info``
    # would be two, and a task finishing between them would pair PROGRESS with its result.
    meta = result.backend.get_task_meta(result.id)
    state = meta["status"]
    if state == "FAILURE":
        return {"state": state, "current": 1, "total": 1, "status": str(result.info)}
    info = meta["result"] if isinstance(meta["result"], dict) else {}
    report = {
        "state": state,
        "current": info.get("current", 0),
        "total": info.get("total", 1),
        "status": info.get("status", "Pending..." if state == "PENDING" else state.title()),
    }
    if "result" in info:
        report["result"] = info["result"]
    return report
