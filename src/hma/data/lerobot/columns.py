"""Checks of a LeRobot parquet file's columns: a wrong type or a missing column is one
DataError naming the file, the column, and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from hma.data.lerobot.format import ACTION_KEY, SUCCESS_KEY
from hma.errors import DataError


def check_columns(schema: pa.Schema, path: Path, *, ints: list[str], floats: list[str]) -> None:
    missing = [c for c in ints + floats if c not in schema.names]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)}")
    for c in ints:
        if not pa.types.is_integer(schema.field(c).type):
            raise DataError(f"{path}: column {c!r} has type {schema.field(c).type}, expected integers")
    for c in floats:
        if not pa.types.is_floating(schema.field(c).type):
            raise DataError(f"{path}: column {c!r} has type {schema.field(c).type}, expected floats")


def check_action_column(schema: pa.Schema, path: Path, dim: int) -> None:
    if ACTION_KEY not in schema.names:
        raise DataError(f"{path} lacks the column {ACTION_KEY!r}")
    t = schema.field(ACTION_KEY).type
    is_list = pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
    if not is_list or not pa.types.is_floating(t.value_type):
        raise DataError(f"{path}: column 'action' has type {t}, expected a list of {dim} floats per row")
    if pa.types.is_fixed_size_list(t) and t.list_size != dim:
        raise DataError(f"{path}: column 'action' holds {t.list_size} values per row, expected {dim} (features.action.shape)")


def check_image_column(schema: pa.Schema, path: Path, key: str) -> None:
    if key not in schema.names:
        raise DataError(f"{path} lacks the image column {key!r}")
    t = schema.field(key).type
    if not pa.types.is_struct(t) or t.get_field_index("bytes") < 0 or not pa.types.is_binary(t.field("bytes").type):
        raise DataError(f"{path}: image column {key!r} has type {t}, expected struct<bytes: binary, path: string>")


def bool_column(column: pa.ChunkedArray, path: Path, what: str) -> np.ndarray:
    """A bool or 0/1 column, optionally wrapped in one-element lists, as (T,) bool."""
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        array = array.flatten()
    if not (pa.types.is_boolean(array.type) or pa.types.is_integer(array.type)) or array.null_count or len(array) != len(column):
        raise DataError(f"{path}: column {SUCCESS_KEY!r} of {what} has type {column.type}, expected one bool per row")
    return array.to_numpy(zero_copy_only=False).astype(bool)
