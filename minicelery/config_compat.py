"""Celery's setting names before 4.0 (upper case: ``BROKER_URL``, ``CELERY_RESULT_BACKEND``,
``CELERYD_CONCURRENCY``...) and the current name each one stands for, as Celery 5 maps them.
``config`` applies it, through :func:`translate_old_names`."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from .exceptions import ImproperlyConfigured

RENAMED: dict[str, str] = {
    "CELERYBEAT_CRON_STARTING_DEADLINE": "beat_cron_starting_deadline",
    "CELERYBEAT_ENABLE_REMOTE_CONTROL": "beat_enable_remote_control",
    "CELERYBEAT_MAX_LOOP_INTERVAL": "beat_max_loop_interval",
    "CELERYBEAT_REMOTE_CONTROL_MAX_TICK_AGE": "beat_remote_control_max_tick_age",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYBEAT_SCHEDULER": "beat_scheduler",
    "CELERYBEAT_SCHEDULE_FILENAME": "beat_schedule_filename",
    "CELERYBEAT_SYNC_EVERY": "beat_sync_every",
    "CELERYD_AGENT": "worker_agent",
    "CELERYD_AUTOSCALER": "worker_autoscaler",
    "CELERYD_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS": "worker_cancel_long_running_tasks_on_connection_loss",  # noqa: E501
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_CONSUMER": "worker_consumer",
    "CELERYD_DEDUPLICATE_SUCCESSFUL_TASKS": "worker_deduplicate_successful_tasks",
    "CELERYD_DETECT_QUORUM_QUEUES": "worker_detect_quorum_queues",
    "CELERYD_DISABLE_PREFETCH": "worker_disable_prefetch",
    "CELERYD_ENABLE_PREFETCH_COUNT_REDUCTION": "worker_enable_prefetch_count_reduction",
    "CELERYD_ENABLE_SOFT_SHUTDOWN_ON_IDLE": "worker_enable_soft_shutdown_on_idle",
    "CELERYD_ETA_TASK_LIMIT": "worker_eta_task_limit",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger",
    "CELERYD_LOG_COLOR": "worker_log_color",
    "CELERYD_LOG_DATEFMT": "worker_log_datefmt",
    "CELERYD_LOG_FORMAT": "worker_log_format",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_POOL": "worker_pool",
    "CELERYD_POOL_PUTLOCKS": "worker_pool_putlocks",
    "CELERYD_POOL_RESTARTS": "worker_pool_restarts",
    "CELERYD_POOL_START_METHOD": "worker_pool_start_method",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_PROC_ALIVE_TIMEOUT": "worker_proc_alive_timeout",
    "CELERYD_SOFT_SHUTDOWN_TIMEOUT": "worker_soft_shutdown_timeout",
    "CELERYD_STATE_DB": "worker_state_db",
    "CELERYD_TASK_LOG_DATEFMT": "worker_task_log_datefmt",
    "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TIMER": "worker_timer",
    "CELERYD_TIMER_PRECISION": "worker_timer_precision",
    "CELERYD_WORKER_LOST_WAIT": "worker_lost_wait",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_ACKS_ON_FAILURE": "task_acks_on_failure",
    "CELERY_ACKS_ON_FAILURE_OR_TIMEOUT": "task_acks_on_failure_or_timeout",
    "CELERY_ACKS_ON_TIMEOUT": "task_acks_on_timeout",
    "CELERY_ALLOW_ERROR_CB_ON_CHORD_HEADER": "task_allow_error_cb_on_chord_header",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERY_ARANGODB_BACKEND_SETTINGS": "arangodb_backend_settings",
    "CELERY_CACHE_BACKEND": "cache_backend",
    "CELERY_CACHE_BACKEND_OPTIONS": "cache_backend_options",
    "CELERY_COUCHBASE_BACKEND_SETTINGS": "couchbase_backend_settings",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues",
    "CELERY_CREATE_MISSING_QUEUE_EXCHANGE_TYPE": "task_create_missing_queue_exchange_type",
    "CELERY_CREATE_MISSING_QUEUE_TYPE": "task_create_missing_queue_type",
    "CELERY_DEFAULT_DELIVERY_MODE": "task_default_delivery_mode",
    "CELERY_DEFAULT_EXCHANGE": "task_default_exchange",
    "CELERY_DEFAULT_EXCHANGE_TYPE": "task_default_exchange_type",
    "CELERY_DEFAULT_PRIORITY": "task_default_priority",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_QUEUE_TYPE": "task_default_queue_type",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_DEFAULT_ROUTING_KEY": "task_default_routing_key",
    "CELERY_DISABLE_RATE_LIMITS": "worker_disable_rate_limits",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_ELASTICSEARCH_MAX_RETRIES": "elasticsearch_max_retries",
    "CELERY_ELASTICSEARCH_RETRY_ON_TIMEOUT": "elasticsearch_retry_on_timeout",
    "CELERY_ELASTICSEARCH_SAVE_META_AS_TEXT": "elasticsearch_save_meta_as_text",
    "CELERY_ELASTICSEARCH_TIMEOUT": "elasticsearch_timeout",
    "CELERY_ENABLE_REMOTE_CONTROL": "worker_enable_remote_control",
    "CELERY_EVENT_EXCHANGE": "event_exchange",
    "CELERY_EVENT_QUEUE_DURABLE": "event_queue_durable",
    "CELERY_EVENT_QUEUE_EXCLUSIVE": "event_queue_exclusive",
    "CELERY_EVENT_QUEUE_EXPIRES": "event_queue_expires",
    "CELERY_EVENT_QUEUE_PREFIX": "event_queue_prefix",
    "CELERY_EVENT_QUEUE_TTL": "event_queue_ttl",
    "CELERY_EVENT_SERIALIZER": "event_serializer",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERY_INHERIT_PARENT_PRIORITY": "task_inherit_parent_priority",
    "CELERY_MAX_CACHED_RESULTS": "result_cache_max",
    "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_MONGODB_BACKEND_SETTINGS": "mongodb_backend_settings",
    "CELERY_QUEUES": "task_queues",
    "CELERY_QUEUE_MAX_PRIORITY": "task_queue_max_priority",
    "CELERY_REDIRECT_STDOUTS": "worker_redirect_stdouts",
    "CELERY_REDIRECT_STDOUTS_LEVEL": "worker_redirect_stdouts_level",
    "CELERY_REDIS_BACKEND_USE_SSL": "redis_backend_use_ssl",
    "CELERY_REDIS_DB": "redis_db",
    "CELERY_REDIS_HOST": "redis_host",
    "CELERY_REDIS_MAX_CONNECTIONS": "redis_max_connections",
    "CELERY_REDIS_PASSWORD": "redis_password",
    "CELERY_REDIS_PORT": "redis_port",
    "CELERY_REDIS_RETRY_ON_TIMEOUT": "redis_retry_on_timeout",
    "CELERY_REDIS_SOCKET_CONNECT_TIMEOUT": "redis_socket_connect_timeout",
    "CELERY_REDIS_SOCKET_KEEPALIVE": "redis_socket_keepalive",
    "CELERY_REDIS_SOCKET_TIMEOUT": "redis_socket_timeout",
    "CELERY_REDIS_USERNAME": "redis_username",
    "CELERY_REJECT_ON_WORKER_LOST": "task_reject_on_worker_lost",
    "CELERY_REMOTE_TRACEBACKS": "task_remote_tracebacks",
    "CELERY_REPR_MAXLEVELS": "task_repr_maxlevels",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_RESULT_BACKEND_ALWAYS_RETRY": "result_backend_always_retry",
    "CELERY_RESULT_BACKEND_BASE_SLEEP_BETWEEN_RETRIES_MS": "result_backend_base_sleep_between_retries_ms",  # noqa: E501
    "CELERY_RESULT_BACKEND_MAX_RETRIES": "result_backend_max_retries",
    "CELERY_RESULT_BACKEND_MAX_SLEEP_BETWEEN_RETRIES_MS": "result_backend_max_sleep_between_retries_ms",  # noqa: E501
    "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS": "result_backend_transport_options",
    "CELERY_RESULT_CHORD_EXPIRES": "result_chord_expires",
    "CELERY_RESULT_CHORD_JOIN_TIMEOUT": "result_chord_join_timeout",
    "CELERY_RESULT_CHORD_RETRY_INTERVAL": "result_chord_retry_interval",
    "CELERY_RESULT_COMPRESSION": "result_compression",
    "CELERY_RESULT_DBURI": "database_url",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS": "database_short_lived_sessions",
    "CELERY_RESULT_DB_TABLENAMES": "database_table_names",
    "CELERY_RESULT_ENGINE_OPTIONS": "database_engine_options",
    "CELERY_RESULT_EXCHANGE": "result_exchange",
    "CELERY_RESULT_EXCHANGE_TYPE": "result_exchange_type",
    "CELERY_RESULT_EXTENDED": "result_extended",
    "CELERY_RESULT_FAILURE_EXPIRES": "result_failure_expires",
    "CELERY_RESULT_PERSISTENT": "result_persistent",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_RETRY_ON_WORKER_LOST": "task_retry_on_worker_lost",
    "CELERY_ROUTES": "task_routes",
    "CELERY_SECURITY_CERTIFICATE": "security_certificate",
    "CELERY_SECURITY_CERT_STORE": "security_cert_store",
    "CELERY_SECURITY_DIGEST": "security_digest",
    "CELERY_SECURITY_KEY": "security_key",
    "CELERY_SECURITY_KEY_PASSWORD": "security_key_password",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERY_STORE_EAGER_RESULT": "task_store_eager_result",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
    "CELERY_TASK_PROTOCOL": "task_protocol",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_WORKER_DIRECT": "worker_direct",
}
"""Old names that are not simply the new name in upper case."""

SAME_NAME: tuple[str, ...] = (
    "azureblockblob_base_path",
    "azureblockblob_connection_timeout",
    "azureblockblob_container_name",
    "azureblockblob_read_timeout",
    "azureblockblob_retry_increment_base",
    "azureblockblob_retry_initial_backoff_sec",
    "azureblockblob_retry_max_attempts",
    "broker_channel_error_retry",
    "broker_connection_max_retries",
    "broker_connection_retry",
    "broker_connection_retry_on_startup",
    "broker_connection_timeout",
    "broker_failover_strategy",
    "broker_heartbeat",
    "broker_heartbeat_checkrate",
    "broker_host",
    "broker_login_method",
    "broker_native_delayed_delivery_queue_type",
    "broker_password",
    "broker_pool_acquire_timeout",
    "broker_pool_limit",
    "broker_port",
    "broker_read_url",
    "broker_transport",
    "broker_transport_options",
    "broker_url",
    "broker_use_ssl",
    "broker_user",
    "broker_vhost",
    "broker_write_url",
    "cassandra_auth_kwargs",
    "cassandra_auth_provider",
    "cassandra_bundle_path",
    "cassandra_entry_ttl",
    "cassandra_keyspace",
    "cassandra_options",
    "cassandra_port",
    "cassandra_read_consistency",
    "cassandra_servers",
    "cassandra_table",
    "cassandra_write_consistency",
    "control_exchange",
    "control_queue_durable",
    "control_queue_exclusive",
    "control_queue_expires",
    "control_queue_ttl",
    "cosmosdbsql_collection_name",
    "cosmosdbsql_consistency_level",
    "cosmosdbsql_database_name",
    "cosmosdbsql_max_retry_attempts",
    "cosmosdbsql_max_retry_wait_time",
    "database_create_tables_at_setup",
    "database_engine_callback",
    "database_table_schemas",
    "enable_utc",
    "gcs_base_path",
    "gcs_bucket",
    "gcs_project",
    "gcs_ttl",
    "result_accept_content",
    "s3_access_key_id",
    "s3_base_path",
    "s3_bucket",
    "s3_endpoint_url",
    "s3_region",
    "s3_secret_access_key",
)
"""Settings whose old name is the new one in upper case (``BROKER_CONNECTION_TIMEOUT``)."""

OLD_TO_NEW: dict[str, str] = {**RENAMED, **{name.upper(): name for name in SAME_NAME}}
"""Every old name and the setting it is now."""

CELERY_SETTINGS: frozenset[str] = frozenset(OLD_TO_NEW.values())
"""The current names of Celery's settings that have an old form."""


def translate_old_names(items: Mapping[str, Any], current: Container[str]) -> dict[str, Any]:
    """``items`` with Celery's pre-4.0 names (``BROKER_URL``...) replaced by the current
    ones (``broker_url``; ``current`` holds every current name). Like Celery, a mix of both
    styles is refused unless each name of the minority style is also given in the majority
    style; the error lists the renames."""
    old = {name for name in items if name in OLD_TO_NEW}
    new = {name for name in items if name in CELERY_SETTINGS or name in current}
    if not old:
        return dict(items)
    new_to_old = {current: name for name, current in OLD_TO_NEW.items()}
    if len(old) > len(new):
        left = sorted(name for name in new if new_to_old.get(name) not in items)
        if left:
            renames = "\n".join(f"    {name:<36} -> {new_to_old.get(name, name)}" for name in left)
            raise ImproperlyConfigured(
                "Cannot mix new setting names with old ones: most of these settings use the "
                f"old names, so rename these to the old format (or all to the new one):\n{renames}"
            )
        return {
            OLD_TO_NEW.get(name, name): value for name, value in items.items() if name not in new
        }
    left = sorted(name for name in old if OLD_TO_NEW[name] not in items)
    if new and left:
        renames = "\n".join(f"    {name:<36} -> {OLD_TO_NEW[name]}" for name in left)
        raise ImproperlyConfigured(
            f"Cannot mix new and old setting names; rename these to the new format:\n{renames}"
        )
    return {
        OLD_TO_NEW.get(name, name): value
        for name, value in items.items()
        if name not in old or OLD_TO_NEW[name] not in items
    }
