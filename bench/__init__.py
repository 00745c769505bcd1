"""Throughput, latency and memory benchmark: minicelery versus Celery 5 (see ``bench.run``)."""
