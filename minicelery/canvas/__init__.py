"""Workflow primitives: signatures now; chains, groups and chords build on them."""

from __future__ import annotations

from .signature import Signature, maybe_signature, signature, subtask

__all__ = ["Signature", "maybe_signature", "signature", "subtask"]
