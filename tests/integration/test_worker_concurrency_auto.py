"""``worker -c auto``: the pool sized to the CPUs this worker may use (capped by a cgroup CPU
quota for the prefork pool), said in the log, as Celery's ``worker_concurrency='auto'``."""

from __future__ import annotations

from minicelery import Celery
from minicelery.utils.sysinfo import cpu_budget
from minicelery.worker.controller import expand_hostname
from tests.helpers import WorkerFactory, run_cli, wait_until


def test_concurrency_auto_sizes_the_prefork_pool(
    capp: Celery, worker_factory: WorkerFactory
) -> None:
    expected = cpu_budget().count
    worker = worker_factory(app_module="tests.integration.apps.control", name="auto@%h",
                            extra_args=("-c", "auto"))  # fmt: skip
    hostname = expand_hostname("auto@%h")
    stats = wait_until(lambda: capp.control.inspect(destination=[hostname]).stats(), 15)
    assert stats[hostname]["pool"]["max-concurrency"] == expected
    worker.wait_for_line(f"worker_concurrency='auto' resolved to {expected} (pool=prefork")


def test_a_bad_concurrency_is_one_line_error() -> None:
    done = run_cli("worker", "-c", "lots")
    assert done.returncode == 2
    assert "a number of processes or 'auto', got 'lots'" in done.stderr
    assert "Traceback" not in done.stderr
