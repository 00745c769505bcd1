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
        r"successful_requests|test_send_task_without_ignore_result",
        "reads `celery.worker.state.successful_requests` (the worker's private in-memory state)",
    ),
    (
        r"cancels_subscription|no_subscriptions|get_active_redis_channels",
        "counts Celery's pub/sub channel names (`celery-task-meta-*`): our key layout differs",
    ),
    (r"test_redis_backend\.py", "reads Celery's Redis key layout and backend internals"),
    (r"test_trace_log_arguments", "patches `celery.app.trace` (private tracer module)"),
    (
        r"test_hello_stamps|test_revoke(d_by_headers|_by_stamped_headers)",
        "`revoke_by_stamped_headers` is not implemented (worker side)",
    ),
    (r"test_pool_acquire_timeout", "`broker_pool_acquire_timeout` setting not supported"),
    (r"test_task_sent_event_respects", "uses `app.connection_for_write()` and kombu producers"),
    (r"test_django", "needs Django (not installed on either side)"),
    (
        r"test_redis_backend\.py|test_chord_part_return|test_chord_expires|test_failure_expires",
        "calls the Redis backend's private methods (`get_key_for_group`, `store_result`, "
        "`result_consumer`)",
    ),
    (
        r"test_retry_preserves_ignore_result",
        "reads `celery.worker.state.successful_requests` (the worker's private in-memory state)",
    ),
    (
        r"test_revoke_keeps_state_of_task_started_elsewhere",
        "writes states through the backend's `store_result()` (not implemented here)",
    ),
    (
        r"test_join_native_timeout_zero",
        "`ResultSet.join_native(timeout=0)` raises instead of returning the results that are ready",
    ),
    # Behaviour still to do
    (
        r"test_backend_leak_in_fixture_teardown",
        "20 start/stop cycles of the embedded worker exceed the time cap: each stop takes ~2 s "
        "(its remote-control and broker waits end on a 1 s poll)",
    ),
    (
        r"test_mem_leak|test_events_state_memory_leak",
        "configures the `cache+memory://` result backend, which is not supported",
    ),
    (
        r"test_logfile_format",
        "`%n`/`%i`/`%x` and `%%` escapes in `--logfile` are not expanded as Celery does",
    ),
    (r"test_upgrade", "the `celery upgrade settings` command is missing"),
    (
        r"test_group_results_reach_the_next_group|test_large_group_pipeline",
        "a group followed by a group (`group | group`) never delivers its results downstream",
    ),
    (
        r"test_pending_chord_keeps_header_errback",
        "a header errback is lost while a chord is pending",
    ),
    (
        r"test_(err_)?linking_stamped_sig",
        "reads Celery's worker request object in `task_received` (`request._Request__payload`, "
        "`request.errbacks`); ours is the task message",
    ),
    (
        r"add_to_chord|add_chord_to_chord|replace",
        "`Task.replace()` / `Task.add_to_chord()` are not implemented",
    ),
    (
        r"error_propagates|chord_on_error|immutable_errback_called_by_chord|"
        r"allow_error_cb_on_chord_header|upgraded_chord_link_error",
        "a chord whose header fails raises `ChordError` from `get()` and calls errbacks "
        "differently; Celery 5.7 re-raises the header task's own exception",
    ),
    (
        r"link_error_option|errback_set_as_one_signature",
        "an errback linked to a chord is not called when a header task fails",
    ),
    (
        r"test_chord::test_generator",
        "a generator header is consumed when the chord is built (Celery keeps it lazy until sent)",
    ),
    (
        r"test_all_tasks_of_canvas_are_stamped|test_chain_forwards_args_past_leading_empty|"
        r"test_group_results_in_chain",
        "a one-task group in a chain is not unrolled to that task (its result stays a list)",
    ),
    (
        r"empty_chain|empty_group",
        "empty chains/groups inside a workflow are refused or "
        "mishandled (`cannot send an empty chain`)",
    ),
    (r"test_chain_of_implicit_chords_body_failure", "reads the `task_protocol` setting"),
    (r"in_group_save", "patches the backend's private `_apply_chord_incr`"),
    (
        r"test_chain::|test_chord::|test_group::",
        "canvas edge cases still open (freezing a chain's last id, group in the middle of a "
        "chain, nested chord tails, errbacks with ETA, tuples returned as lists)",
    ),
    (
        r"test_Inspect::test_(registered|active|active_queues|query_task|conf|report|clock)",
        "inspect replies differ in shape from Celery's (kombu queue dicts, args as lists, "
        "`registered('name')` formatting, Lamport clock, full conf)",
    ),
    (
        r"test_Inspect::test_scheduled",
        "ETA tasks wait in the broker, not in the worker, so "
        "`inspect scheduled` lists none (a documented design difference)",
    ),
    (
        r"test_replaced_task_nesting|replace",
        "`Task.replace()` and `replaced_task_nesting` are not implemented",
    ),
    (
        r"time_limit|test_request_time_limits|test_apply_async_time_limits",
        "`request.time_limit`/`soft_time_limit` missing on the request; soft > hard not refused",
    ),
    (r"test_properties", "`request.properties` is missing"),
    (r"pydantic", "the `pydantic=True` task option is not implemented"),
    (
        r"test_retry_switches|test_task_retried_(priority|headers)",
        "a retry does not carry over priority, custom headers, or args/kwargs switches",
    ),
    (
        r"test_retry\b|test_ignore_result",
        "slow tests (retries with 5 s countdowns) cut by the 30 s per-test cap",
    ),
    (r"test_reject_", "`Reject` with/without requeue does not store FAILURE / redeliver as Celery"),
    (r"test_apply_nested_parent_child", "eager `apply()` inside a task does not set parent_id"),
    (r"test_run_worker|test_concurrency_auto", "CLI: `--config` global option, `-c auto`"),
]


def reason_for(test_id: str) -> str:
    for pattern, reason in REASONS:
        if re.search(pattern, test_id):
            return reason
    return "not analysed yet"
