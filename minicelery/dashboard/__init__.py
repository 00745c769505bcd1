"""A live web dashboard for minicelery, with Flower's HTTP API and Prometheus metrics, its task
history kept in Redis. Needs the ``dashboard`` extra (``pip install 'minicelery[dashboard]'``);
nothing else in the package imports it."""

from __future__ import annotations

from .server import check_exposure, parse_credentials, serve

__all__ = ["check_exposure", "parse_credentials", "serve"]
