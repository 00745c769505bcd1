"""Small helpers."""

from __future__ import annotations

import uuid as stdlib_uuid

from minicelery.utils import uuid


def test_uuid_is_a_random_version_4_uuid() -> None:
    ids = {uuid() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = stdlib_uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == stdlib_uuid.RFC_4122
