"""Why a test of Celery's integration suite that passes on Celery still fails on minicelery:
one line per group, matched on the test id (``file::class::test``), first match wins."""

from __future__ import annotations

import re

REASONS: list[tuple[str, str]] = [
    # Celery's private internals and Redis layout
    (
        r"test_connection_recovery\.py",
        "imports kombu/Celery consumer internals "
        "(`celery.utils.threads`, `celery.worker.consumer.consumer`); no public behaviour to match",
    ),
    (
        r"test_request_backend_down\.py",
        "builds `celery.worker.request.Request` (a private worker class) directly",
    ),
    (r"test_security\.py", "message signing (`security` serializer) is not implemented"),
    (
        r"successful_requests|test_send_task_without_ignore_result|test_retry_preserves_ignore",
        "reads `celery.worker.state.successful_requests` (the worker's private in-memory state; "
        "the behaviour behind it is built and tested in our suite)",
    ),
    (
        r"cancels_subscription|no_subscriptions|get_active_redis_channels",
        "counts Celery's pub/sub channel names (`celery-task-meta-*`): results here are waited "
        "for on a Redis stream",
    ),
    (
        r"test_redis_backend\.py|test_chord_part_return|test_chord_expires",
        "reads Celery's Redis key layout (`get_key_for_group`, chord key suffixes) and backend "
        "internals",
    ),
    (
        r"test_chord_on_error",
        "after the behaviour it checks (passes), reads Celery's private `_get_task_meta()` and "
        "its group key `.j` with ZRANGE",
    ),
    (r"in_group_save", "patches the backend's private `_apply_chord_incr`"),
    (
        r"test_join_native_timeout_zero",
        "clears Celery's private `backend._cache` (`join(timeout=0)` itself is built and tested)",
    ),
    (
        r"test_(err_)?linking_stamped_sig",
        "reads Celery's worker request object in `task_received` (`request._Request__payload`); "
        "ours is the task message",
    ),
    (r"test_task_sent_event_respects", "patches a kombu producer's channel"),
    (
        r"test_events_state_memory_leak",
        "declares a kombu queue (`receiver.queue(channel).declare()`) and reads the private "
        "`State._tasks_to_resolve`; our `State` keeps no pending-parent map to bound",
    ),
    (r"test_django", "needs Django (not installed on either side)"),
    # Design differences
    (
        r"test_Inspect::test_scheduled",
        "ETA tasks wait in the broker, not in the worker, so "
        "`inspect scheduled` lists none (a documented design difference)",
    ),
    (
        r"test_report_with_multiserver_result_backend",
        "configures a `cache+memcached://` result backend, which minicelery refuses when it is "
        "set (Celery accepts it and fails on first use)",
    ),
    (
        r"test_run_worker",
        "runs a `celery` executable with an `amqp://` broker (neither exists here)",
    ),
    # Behaviour still to do, or races
    (
        r"test_backend_leak_in_fixture_teardown",
        "20 start/stop cycles of the embedded worker exceed the time cap",
    ),
    (
        r"test_replaced_task_nesting_level_0",
        "a race in the test: it clears its flag after `delay()` returns, and our worker often "
        "sends `task_received` before that (the field itself is built and tested)",
    ),
    (r"test_chain::|test_chord::|test_group::", "canvas edge case not analysed yet"),
]


def reason_for(test_id: str) -> str:
    for pattern, reason in REASONS:
        if re.search(pattern, test_id):
            return reason
    return "not analysed yet"
