"""proj's tasks tested three ways: called directly (a plain unit test), on a test app with
an embedded worker (Celery's ``celery_app`` / ``celery_worker`` fixtures), and on proj's own
app with a worker started by ``start_worker``."""

import pytest

from proj.tasks import add, mul, xsum


def test_add_called_directly_runs_in_this_process():
    # Calling a task runs its function here: no broker, no worker.
    assert add(2, 2) == 4
    assert xsum([1, 2, 3]) == 6


def test_a_task_defined_in_the_test(celery_app, celery_worker):
    @celery_app.task
    def mul_on_test_app(x, y):
        return x * y

    celery_worker.reload()
    assert mul_on_test_app.delay(4, 4).get(timeout=10) == 16


@pytest.mark.celery(result_extended=True)
def test_the_celery_marker_configures_the_app(celery_app):
    assert celery_app.conf.result_extended is True


def test_projs_own_tasks_through_a_worker(proj_worker):
    assert add.delay(2, 2).get(timeout=10) == 4
    assert mul.delay(3, 5).get(timeout=10) == 15
