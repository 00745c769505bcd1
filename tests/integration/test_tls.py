"""``rediss://`` with a CA and client certificates (``broker_use_ssl``,
``redis_backend_use_ssl``, or the URL's query), a worker and a client over TLS."""

from __future__ import annotations

import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from minicelery import Celery
from tests.helpers import LOOPBACK, WorkerFactory, find_redis_server_bin, free_port, wait_until
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


@pytest.mark.timeout(30)
def test_a_sentinel_names_a_tls_master_and_the_client_reaches_it(
    tls_url: str, tmp_path: Path
) -> None:
    """``sentinel://`` with ``broker_use_ssl``: the sentinel (plain, TLS to the master it
    watches) names the master; the client's connections to it are TLS with the test's
    certificates."""
    binary = find_redis_server_bin()
    assert binary
    master_port = urllib.parse.urlsplit(tls_url).port
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind {LOOPBACK}\ndir {tmp_path}\n"
        f"sentinel monitor mymaster {LOOPBACK} {master_port} 1\n"
        "tls-replication yes\ntls-cert-file server.crt\ntls-key-file server.key\n"
        "tls-ca-cert-file ca.crt\n"
    )
    with (tmp_path / "sentinel.log").open("ab") as log:
        sentinel = subprocess.Popen([binary, str(conf), "--sentinel"], cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)  # fmt: skip
    app = Celery(
        "sentinel_tls", broker=f"sentinel://{LOOPBACK}:{port}", backend=None,
        broker_transport_options={"master_name": "mymaster"},
        broker_use_ssl=ssl_options(tmp_path), key_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    try:
        wait_until(lambda: _names_master(port), timeout=10)
        app.send_task("tests.nothing", queue="tls-q")
        assert app.broker.queue_sizes(["tls-q"]) == {"tls-q": 1}
    finally:
        app.close()
        sentinel.terminate()
        sentinel.wait(10)


def _names_master(port: int) -> bool:
    client = redis.Redis(LOOPBACK, port, socket_timeout=1.0)
    try:
        return client.sentinel_get_master_addr_by_name("mymaster") is not None
    except redis.RedisError:
        return False
    finally:
        client.close()
