"""Celery's backend base classes by their names (``celery.backends.base``).

``BaseKeyValueStoreBackend`` is what code checks for with ``isinstance`` to ask whether a
backend keeps one record per task id under a key (Redis does; a disabled backend does not).
"""

from .. import states
from ..backend.base import DisabledBackend, KeyValueStoreBackend, ResultBackend

Backend = ResultBackend
BaseBackend = ResultBackend
BaseKeyValueStoreBackend = KeyValueStoreBackend
KeyValueStoreBackend = KeyValueStoreBackend

__all__ = [
    "Backend",
    "BaseBackend",
    "BaseKeyValueStoreBackend",
    "DisabledBackend",
    "KeyValueStoreBackend",
    "states",
]
