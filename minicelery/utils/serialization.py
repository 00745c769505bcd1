"""Exception serialization helpers at Celery's path (``celery.utils.serialization``)."""

from ..exceptions import UnpickleableExceptionWrapper

__all__ = ["UnpickleableExceptionWrapper"]
