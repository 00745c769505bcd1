"""``rediss://`` with a CA and client certificates (``broker_use_ssl``,
``redis_backend_use_ssl``, or the URL's query), a worker and a client over TLS."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minicelery import Celery
from tests.helpers import WorkerFactory, find_redis_server_bin
from tests.integration.tlsredis import ssl_options, tls_redis

APP = "tests.integration.apps.tls_app"


@pytest.fixture
def tls_url(tmp_path: Path) -> Iterator[str]:
    binary = find_redis_server_bin()
    assert binary, "redis-server is needed"
    with tls_redis(binary, tmp_path) as url:
        yield url


def test_worker_and_client_over_tls(tls_url: str, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    factory = WorkerFactory(tls_url, prefix)
    options = ssl_options(tmp_path)
    app = Celery(
        "tls_client", broker=tls_url, backend=tls_url, key_prefix=prefix,
        broker_use_ssl=options, redis_backend_use_ssl=options,
    )  # fmt: skip
    try:
        factory(APP, concurrency=1, env={"MC_TEST_CERTS": str(tmp_path)})
        assert app.send_task("tests.integration.apps.tls_app.add", (2, 3)).get(timeout=10) == 5
    finally:
        app.close()
        factory.cleanup()
        print(factory.report())


def test_the_url_query_form(tls_url: str, tmp_path: Path) -> None:
    query = urllib.parse.urlencode({**ssl_options(tmp_path), "ssl_cert_reqs": "required"})
    url = f"{tls_url}?{query}"
    app = Celery("tls_query", broker=url, backend=url, key_prefix=f"t-{uuid.uuid4().hex[:8]}")
    try:
        assert app.broker.client.ping()
    finally:
        app.close()
