"""Damage a file the way the robustness tests need: one flipped byte, one mangled JSON field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def flip_byte(path: Path, pos: float, byte: int) -> None:
    """XOR ``byte`` (1..255) into the byte at fraction ``pos`` (0..1) of the file."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * pos)] ^= byte
    path.write_bytes(bytes(data))


def mangle_json_field(path: Path, key: str, value: Any, drop: bool) -> Any:
    """Replace field ``key`` of the JSON object in ``path`` by ``value`` (or delete it when
    ``drop``); returns the original value."""
    meta = json.loads(path.read_text())
    original = meta[key]
    if drop:
        del meta[key]
    else:
        meta[key] = value
    path.write_text(json.dumps(meta))
    return original
