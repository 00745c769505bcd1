"""The quickstart: start a real worker (prefork, two children) on the First Steps tasks, send
it work, print the results, and stop it.

    python examples/quickstart.py

Uses the embedded Redis unless MINICELERY_BROKER_URL / MINICELERY_RESULT_BACKEND point at a
Redis server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "first_steps"
sys.path.insert(0, str(HERE))

from tasks import add  # noqa: E402  (the First Steps module, found through the path above)


def start_worker() -> tuple[subprocess.Popen[str], threading.Event]:
    command = [sys.executable, "-m", "minicelery", "-A", "tasks", "worker", "-l", "info", "-c", "2"]
    print("$", " ".join(command[1:]), f"  (in {HERE.name}/)")
    worker = subprocess.Popen(
        command,
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ready = threading.Event()

    def relay() -> None:
        # Show the banner and the first tasks' log lines; after that only warnings.
        assert worker.stdout is not None
        shown = 0
        for line in worker.stdout:
            per_task = "] received" in line or "succeeded in" in line
            if not per_task or shown < 4:
                print("  worker |", line.rstrip())
                shown += per_task
            if "ready." in line:
                ready.set()
        ready.set()

    threading.Thread(target=relay, daemon=True).start()
    return worker, ready


def main() -> int:
    worker, ready = start_worker()
    try:
        if not ready.wait(30) or worker.poll() is not None:
            print("the worker did not start", file=sys.stderr)
            return 1
        result = add.delay(4, 4)
        print(f">>> add.delay(4, 4).get(timeout=10)  ->  {result.get(timeout=10)}")
        started = time.perf_counter()
        results = [add.delay(i, i) for i in range(100)]
        values = [r.get(timeout=30) for r in results]
        elapsed = time.perf_counter() - started
        print(f">>> 100 x add.delay(i, i)  ->  {values[:5]} ... {values[-1]}  ({elapsed:.3f}s)")
        print(
            f">>> state: {result.state}, ready: {result.ready()}, successful: {result.successful()}"
        )
        return 0 if values == [i + i for i in range(100)] else 1
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


if __name__ == "__main__":
    sys.exit(main())
