"""An app on a TLS-only Redis: the ``rediss://`` URL and the certificates' directory come
from the environment the TLS tests set."""

from __future__ import annotations

import os
from pathlib import Path

from minicelery import Celery

URL = os.environ.get("MC_TEST_REDIS_URL", "memory://tls")
CERTS = Path(os.environ.get("MC_TEST_CERTS", "."))
SSL = {
    "ssl_cert_reqs": "CERT_REQUIRED",
    "ssl_ca_certs": str(CERTS / os.environ.get("MC_TEST_CA", "ca.crt")),
    "ssl_certfile": str(CERTS / "client.crt"),
    "ssl_keyfile": str(CERTS / "client.key"),
}

app = Celery(
    "tls_app",
    broker=URL,
    backend=URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    broker_use_ssl=SSL,
    redis_backend_use_ssl=SSL,
    broker_connection_max_retries=int(os.environ.get("MC_TEST_MAX_RETRIES", "100")),
)


@app.task
def add(x: int, y: int) -> int:
    return x + y
