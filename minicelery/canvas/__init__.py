"""Workflow primitives: signatures, chains, groups, chords, map/starmap and chunks."""

from __future__ import annotations

from .chain import _chain, chain
from .chord import chord
from .group import group
from .mapping import chunks, xmap, xstarmap
from .signature import Signature, maybe_signature, signature, subtask
from .stamping import StampingVisitor

__all__ = [
    "Signature",
    "StampingVisitor",
    "_chain",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]
