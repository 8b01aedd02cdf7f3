"""Atomic file writes: a file either has its complete new content or does not exist.

Every writer in hma goes through here (temp file in the same folder, fsync, rename), so a
process killed mid-write never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; datasets and checkpoints are meant
# to be shared, so finished files get the permissions a plain open() would have given.
def _file_mode() -> int:
    return 0o666 & ~_umask()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic_write(path, lambda f: f.write(data))


def _aside(out: Path) -> Path:
    """Where :func:`replace_folder` keeps the old folder while the new one moves in (hidden)."""
    return out.with_name(f".{out.name}.old")


def replace_folder(new: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put the complete folder ``new`` in the place of ``out``: ``out`` is renamed aside, ``new``
    renamed in, then the old one deleted. Until the first rename ``out`` is untouched, so a
    command that fails or is killed while building ``new`` beside it loses nothing."""
    import shutil

    new, out = Path(new), Path(out)
    finish_replace(out)
    if out.exists():
        os.replace(out, _aside(out))
    os.replace(new, out)
    _fsync_dir(out.parent)
    shutil.rmtree(_aside(out), ignore_errors=True)


def finish_replace(out: str | os.PathLike) -> None:
    """Tidy up after a :func:`replace_folder` that was killed: killed between its two renames,
    the old folder is put back (the new one is still beside it); killed while deleting the old
    one, the rest of it is deleted."""
    import shutil

    out = Path(out)
    aside = _aside(out)
    if aside.exists() and not out.exists():
        os.replace(aside, out)
    shutil.rmtree(aside, ignore_errors=True)



def save_figure_png(fig, path: str | os.PathLike, **savefig) -> None:
    """Write a matplotlib figure as a PNG atomically (no half-written plot), then close it."""
    import io as _io

    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())

def nan_to_none(value: Any) -> Any:
    """``value`` with every NaN float (in nested dicts and lists) as None, JSON's null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` in .npy format to ``path`` atomically."""
    _atomic_write(path, lambda f: np.save(f, array))


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict) -> None:
    """Save a dict of tensors as safetensors to ``path`` atomically (contiguous copies)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


# A weights folder: what every saved network of hma is (runs, tokenizers, policies, classifiers).
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# config.json key: the sha256 of the rest of the document in canonical JSON (sorted keys, no
# spaces), so a changed value is caught while whitespace and key order may change.
SEAL_KEY = "config_sha256"


def _canonical_sha256(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(doc: dict) -> dict:
    """``doc`` with the checksum of its content under :data:`SEAL_KEY` (any old one replaced)."""
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: _canonical_sha256(body)}


def unseal(doc: dict, path: str | os.PathLike) -> dict:
    """``doc`` without its seal; a CheckpointError naming ``path`` when the content no longer
    matches it (a damaged or hand-edited file). A document without a seal is returned as it is."""
    from hma.errors import CheckpointError

    if SEAL_KEY not in doc:
        # A seal whose own key was damaged would otherwise pass as a deliberately unsealed file.
        near = [k for k in doc if len(k) == len(SEAL_KEY) and sum(a != b for a, b in zip(k, SEAL_KEY)) == 1]
        if near:
            raise CheckpointError(f"{path} has a key {near[0]!r} where hma writes {SEAL_KEY!r}: the file is damaged; "
                                  "expected the file as hma wrote it")
        return doc
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    if doc[SEAL_KEY] != _canonical_sha256(body):
        raise CheckpointError(f"{path} does not match the {SEAL_KEY} it was written with: the file is damaged or was "
                              f"edited; expected the file as hma wrote it (delete the {SEAL_KEY!r} key to load an edit)")
    return body


def save_weights_folder(out: str | os.PathLike, tensors: dict, config: dict) -> None:
    """``out/model.safetensors`` and a sealed ``out/config.json``, each written atomically, weights first."""
    out = Path(out)
    atomic_save_safetensors(out / WEIGHTS_FILE, tensors)
    atomic_write_json(out / CONFIG_FILE, seal(config))


def read_config_file(file: str | os.PathLike, what: str) -> dict:
    """A config.json as a dict without its seal, or a CheckpointError naming the file when it is
    missing, not JSON, not an object, or changed since it was sealed."""
    from hma.errors import CheckpointError

    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file} is missing, expected a {what} config")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{file} is not valid JSON: the file is truncated or corrupt") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} holds {type(config).__name__}, expected a JSON object")
    return unseal(config, file)


def read_weights_folder(path: str | os.PathLike, what: str) -> tuple[dict, dict]:
    """The tensors and the config of a folder written by :func:`save_weights_folder`; a
    CheckpointError naming the file when either is missing, truncated or damaged."""
    from safetensors.torch import load_file

    from hma.errors import CheckpointError

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"{what} {path} holds no {name}, expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = read_config_file(path / CONFIG_FILE, what)
    try:
        tensors = load_file(path / WEIGHTS_FILE)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{path / WEIGHTS_FILE} is not a readable safetensors file ({e})") from None
    return tensors, config


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks so large memmaps never load whole."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def is_int(x: Any) -> bool:
    """An integer as JSON or numpy gives one (not a bool)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    """A real number as JSON or numpy gives one (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into one clear error."""
    from hma.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid JSON ({e.msg if isinstance(e, json.JSONDecodeError) else e})") from None
