"""``app.control``: remote control of workers. Revocation and the broadcast commands arrive
with the task-semantics and operations work; until then calling them says so plainly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Celery


class Control:
    """Celery's ``app.control`` interface."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | list[str],
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> None:
        raise NotImplementedError("revoke is not implemented yet in this version of minicelery")
