"""Pre-tokenized datasets: ``DATASET/tokens/<tokenizer name>-<identity>/`` beside the frames.

The folder is keyed by the tokenizer's identity (12 hex digits of its config and weights,
:func:`hma.tokenizer.protocol.content_identity`) as well as its name, so two tokenizers that
share a name (two folders called ``tok``) each keep their own shard. Shards written before
the key, ``tokens/<tokenizer name>/``, are still read when their weights match.

``tokens.npy`` (N, h, w) int32 for a discrete tokenizer or ``latents.npy`` (N, C, h, w)
float16 for a continuous one, row i being frame i of the store, plus ``tokens.json``
naming the tokenizer (name, kind, fingerprint), the grid, the dataset's ``frames.npy``
checksum and the array's own checksum. A shard is written into ``<name>.partial/`` in
chunks, with ``progress.json`` recording how many rows are done, so a killed run resumes;
the folder is renamed into place only when complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hma.config import TokenKind
from hma.data.store import FRAMES_FILE, EpisodeStore
from hma.errors import ConfigError, DataError
from hma.io import atomic_write_json, sha256_file
from hma.progress import bar as progress_bar
from hma.tokenizer.protocol import Tokenizer

TOKENS_DIR = "tokens"
SHARD_META_FILE = "tokens.json"
TOKENS_FILE = "tokens.npy"
LATENTS_FILE = "latents.npy"
PROGRESS_FILE = "progress.json"
_PARTIAL = ".partial"


@dataclass
class TokenShard:
    """An opened token shard: ``array`` is a read-only memmap aligned with the store's rows."""

    array: np.ndarray  # (N, h, w) int32 or (N, C, h, w) float16
    meta: dict[str, Any]
    path: Path


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise ConfigError(f"tokenizer name {name!r} cannot name a folder, expected letters, digits, '_', '-' or '.'")
    return name


def shard_path(store: EpisodeStore, tokenizer: Tokenizer) -> Path:
    """``DATASET/tokens/<name>-<identity>``: the shard of exactly this tokenizer (config and weights)."""
    return store.root / TOKENS_DIR / f"{_checked_name(tokenizer.name)}-{tokenizer.identity}"


def _find_shard(store: EpisodeStore, tokenizer: str | Tokenizer) -> Path:
    """The shard folder to open: the tokenizer's own; for a name alone, the one shard of a
    tokenizer of that name; else (a shard written before the key) ``tokens/<name>``."""
    name = _checked_name(tokenizer if isinstance(tokenizer, str) else tokenizer.name)
    legacy = store.root / TOKENS_DIR / name
    if not isinstance(tokenizer, str):
        own = shard_path(store, tokenizer)
        return legacy if _read_meta(own) is None and _read_meta(legacy) is not None else own
    keyed = re.compile(re.escape(name) + r"-[0-9a-f]{12}")
    root = store.root / TOKENS_DIR
    found = sorted(p for p in root.iterdir() if keyed.fullmatch(p.name) and p.is_dir()) if root.is_dir() else []
    if len(found) > 1:
        raise DataError(f"{root} holds the shards of {len(found)} tokenizers named {name!r} "
                        f"({', '.join(p.name for p in found)}), expected one; pass the tokenizer itself to pick its shard")
    return found[0] if found else legacy


def _array_spec(tokenizer: Tokenizer, num_frames: int) -> tuple[str, np.dtype, tuple[int, ...]]:
    h, w = tokenizer.grid
    if tokenizer.kind == TokenKind.DISCRETE:
        return TOKENS_FILE, np.dtype(np.int32), (num_frames, h, w)
    return LATENTS_FILE, np.dtype(np.float16), (num_frames, tokenizer.latent_channels, h, w)


def _identity(tokenizer: Tokenizer, store: EpisodeStore) -> dict[str, Any]:
    """What a shard must match to be current: the tokenizer's weights and the dataset's frames."""
    ident = {
        "tokenizer": tokenizer.name, "identity": tokenizer.identity, "kind": tokenizer.kind,
        "fingerprint": tokenizer.fingerprint,
        "grid": list(tokenizer.grid), "num_frames": store.num_frames,
        "dataset_frames_sha256": store.meta["files"][FRAMES_FILE]["sha256"],
    }
    if tokenizer.kind == TokenKind.DISCRETE:
        ident["vocab_size"] = int(tokenizer.vocab_size)
    else:
        ident["latent_channels"] = int(tokenizer.latent_channels)
    return ident


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / SHARD_META_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def is_current(store: EpisodeStore, tokenizer: Tokenizer) -> bool:
    """True when the shard exists, is complete, and was made from these frames with these weights."""
    path = shard_path(store, tokenizer)
    meta = _read_meta(path)
    if meta is None:
        return False
    ident = _identity(tokenizer, store)
    if any(meta.get(k) != v for k, v in ident.items()):
        return False
    name, _, _ = _array_spec(tokenizer, store.num_frames)
    spec = meta.get("files")
    spec = spec.get(name) if isinstance(spec, dict) else None
    return isinstance(spec, dict) and (path / name).is_file() and (path / name).stat().st_size == spec.get("bytes")


def tokenize_dataset(store: EpisodeStore, tokenizer: Tokenizer, *, batch_size: int = 256, chunk_frames: int = 4096,
                     progress: bool = True) -> tuple[TokenShard, bool]:
    """Write (or keep) the token shard of ``store``; returns it and whether it was already current."""
    final = shard_path(store, tokenizer)
    if is_current(store, tokenizer):
        return open_token_shard(store, tokenizer), True
    if tuple(store.image_size) != tuple(tokenizer.image_size):
        raise DataError(f"{store.root} has {list(store.image_size)} frames, expected {list(tokenizer.image_size)} for tokenizer {tokenizer.name}")
    ident = _identity(tokenizer, store)
    name, dtype, shape = _array_spec(tokenizer, store.num_frames)
    partial = final.with_name(final.name + _PARTIAL)
    done = 0
    try:
        pending = json.loads((partial / PROGRESS_FILE).read_text())
        if all(pending.get(k) == v for k, v in ident.items()) and (partial / name).is_file():
            done = int(pending["done"])
    except (OSError, json.JSONDecodeError, KeyError, ValueError):
        done = 0
    if done == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        array = np.lib.format.open_memmap(partial / name, mode="w+", dtype=dtype, shape=shape)
    else:
        array = np.load(partial / name, mmap_mode="r+")
    bar = progress_bar(total=store.num_frames, initial=done, show=progress, unit="frame", dynamic_ncols=True,
               desc=f"{store.embodiment} -> tokens/{final.name}")
    for start in range(done, store.num_frames, chunk_frames):
        end = min(start + chunk_frames, store.num_frames)
        for i in range(start, end, batch_size):
            j = min(i + batch_size, end)
            tokens = tokenizer.encode(torch.from_numpy(np.array(store.frames[i:j])))
            array[i:j] = tokens.cpu().numpy().astype(dtype)
            bar.update(j - i)
        array.flush()
        atomic_write_json(partial / PROGRESS_FILE, {**ident, "done": end})  # after the flush: `done` rows are on disk
    bar.close()
    del array
    meta = {
        **ident, "file": name, "dtype": dtype.name, "shape": list(shape),
        "files": {name: {"bytes": (partial / name).stat().st_size, "sha256": sha256_file(partial / name)}},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(partial / SHARD_META_FILE, meta)
    (partial / PROGRESS_FILE).unlink()
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return open_token_shard(store, tokenizer), False


def _missing_hint(path: Path, name: str) -> str:
    """What to do about a shard that is not there: resume an unfinished one, or write it."""
    names = sorted(p.name for p in path.parent.glob("*")) if path.parent.is_dir() else []
    if any(re.fullmatch(re.escape(name) + r"(-[0-9a-f]{12})?" + re.escape(_PARTIAL), n) for n in names):
        return "an unfinished run left a .partial folder, re-run `hma tokenize` to resume it"
    others = [n for n in names if re.fullmatch(re.escape(name) + r"-[0-9a-f]{12}", n) and n != path.name]
    if others:
        return (f"only other tokenizers named {name!r} have shards here ({', '.join(others)}): their config or "
                "weights differ; run `hma tokenize` with this tokenizer first")
    return "run `hma tokenize` first"


def open_token_shard(dataset: str | Path | EpisodeStore, tokenizer: str | Tokenizer, *, verify: bool = False) -> TokenShard:
    """Open the token shard of ``tokenizer`` (see the module docstring). Passing a tokenizer
    object opens its own shard and checks that it was made with its weights; a name alone
    opens the one shard of a tokenizer of that name. Raises :class:`DataError` if the shard
    is missing, unfinished, truncated, stale (the frames changed) or from another tokenizer."""
    store = dataset if isinstance(dataset, EpisodeStore) else EpisodeStore(dataset)
    name = tokenizer if isinstance(tokenizer, str) else tokenizer.name
    path = _find_shard(store, tokenizer)
    meta = _read_meta(path)
    if meta is None:
        raise DataError(f"{path} holds no complete token shard for tokenizer {name!r} ({_missing_hint(path, name)})")
    if meta.get("tokenizer") != name:
        raise DataError(f"{path} was made by tokenizer {meta.get('tokenizer')!r}, expected {name!r}")
    key = path.name[len(name) + 1:]  # "" for a shard written before the key
    if key and meta.get("identity") != key:
        raise DataError(f"{path} was made by tokenizer identity {meta.get('identity')!r}, expected {key!r} as its "
                        "folder's name says (re-run `hma tokenize`)")
    if not isinstance(tokenizer, str) and meta.get("fingerprint") != tokenizer.fingerprint:
        raise DataError(f"{path} was made by tokenizer weights {str(meta.get('fingerprint'))[:12]}, expected {tokenizer.fingerprint[:12]} (re-run `hma tokenize`)")
    if meta.get("dataset_frames_sha256") != store.meta["files"][FRAMES_FILE]["sha256"] or meta.get("num_frames") != store.num_frames:
        raise DataError(f"{path} was made from other frames than {store.root / FRAMES_FILE} now holds (re-run `hma tokenize`)")
    files = meta.get("files")
    if not isinstance(meta.get("file"), str) or not isinstance(files, dict) or not isinstance(files.get(meta["file"]), dict):
        raise DataError(f"{path / SHARD_META_FILE} does not describe its array (fields 'file' and 'files'), "
                        "expected the metadata written by `hma tokenize`")
    file = path / meta["file"]
    spec = files[meta["file"]]
    if not file.is_file() or file.stat().st_size != spec.get("bytes"):
        size = file.stat().st_size if file.is_file() else 0
        raise DataError(f"{file} has {size} bytes, expected {spec.get('bytes')}: the shard is truncated or missing")
    if verify and sha256_file(file) != spec.get("sha256"):
        raise DataError(f"{file} fails its checksum: the shard is corrupt")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{file} is not a readable .npy array ({e})") from None
    if list(array.shape) != meta.get("shape") or array.dtype.name != meta.get("dtype"):
        raise DataError(f"{file} holds {array.dtype}{list(array.shape)}, expected {meta.get('dtype')}{meta.get('shape')}")
    return TokenShard(array=array, meta=meta, path=path)
