"""TLS for ``rediss://`` URLs, with Celery's setting keys: ``broker_use_ssl`` and
``redis_backend_use_ssl`` take ``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile`` and
``ssl_keyfile`` (and redis-py's other ``ssl_*`` keys); the URL's query may give the same keys,
as Celery allows (``rediss://host:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem``).

``ssl_cert_reqs`` may be an :mod:`ssl` constant (``ssl.CERT_REQUIRED``), its name
(``CERT_REQUIRED``) or redis-py's word (``required``, ``optional``, ``none``).
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..exceptions import ImproperlyConfigured

CERT_REQS = {
    "cert_required": ssl.CERT_REQUIRED,
    "required": ssl.CERT_REQUIRED,
    "cert_optional": ssl.CERT_OPTIONAL,
    "optional": ssl.CERT_OPTIONAL,
    "cert_none": ssl.CERT_NONE,
    "none": ssl.CERT_NONE,
}


def cert_reqs(value: Any) -> ssl.VerifyMode:
    """``ssl_cert_reqs`` in any of Celery's spellings, as an :class:`ssl.VerifyMode`."""
    if isinstance(value, int):
        return ssl.VerifyMode(value)
    try:
        return CERT_REQS[str(value).strip().lower()]
    except KeyError:
        raise ImproperlyConfigured(
            f"ssl_cert_reqs must be CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE, got {value!r}"
        ) from None


def ssl_kwargs(options: Mapping[str, Any] | bool) -> dict[str, Any]:
    """redis-py's connection keywords for a ``broker_use_ssl`` value (True: defaults)."""
    if options is True or not options:
        return {}
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"TLS settings must be a dict of ssl_* keys, got {options!r}")
    out = {key: value for key, value in options.items() if key.startswith("ssl_")}
    if "ssl_cert_reqs" in out:
        out["ssl_cert_reqs"] = cert_reqs(out["ssl_cert_reqs"])
        if out["ssl_cert_reqs"] == ssl.CERT_NONE:
            out.setdefault("ssl_check_hostname", False)
    return out


def tls_on(options: Mapping[str, Any] | bool | None) -> dict[str, Any]:
    """The keywords that turn TLS on for a client whose URL does not say it (the master
    a sentinel names, a cluster's nodes): none without ``broker_use_ssl``. A client name
    makes one round trip on connect read past the session tickets a TLS 1.3 server sends
    after its handshake, which redis-py would take for a reply left unread (see
    :func:`.connect.client_from_url`)."""
    if not options:
        return {}
    return {"ssl": True, **ssl_kwargs(options), "client_name": "minicelery"}


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its ``ssl_*`` query options, and those options."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    taken = {key: value for key, value in query if key.startswith("ssl_")}
    if not taken:
        return url, {}
    rest = urllib.parse.urlencode([(key, value) for key, value in query if key not in taken])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), taken
