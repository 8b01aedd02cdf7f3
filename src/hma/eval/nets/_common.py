"""What the three feature networks share: pixel conventions, weight-file reading, availability.

Pixel convention (the whole of ``hma.eval``): images are (..., H, W, 3) channels-last, either
uint8 in [0, 255] or floating point in [0, 1]. ``data_range`` overrides the float range (pass
255 for float arrays holding [0, 255] values).

The standard networks ship as third-party weight files that cannot be downloaded here. Each
loader takes a path, falls back to an environment variable, and when neither names a file
returns :class:`Unavailable` instead of a network: a metric computed with anything other than
the standard weights must never be reported under the standard name.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from hma.errors import CheckpointError, DataError


def to_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A tensor as is; an array (or memmap) shared without copying unless it is read-only."""
    if isinstance(x, torch.Tensor):
        return x
    a = np.asarray(x)
    # torch cannot share read-only memory (e.g. a dataset's np.load(mmap_mode="r") frames).
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def as_float_pixels(x: torch.Tensor | np.ndarray, *, data_range: float | None = None) -> tuple[torch.Tensor, float]:
    """Turn pixels into a floating tensor and say which range they live in.

    uint8 -> float32 with range 255; float16/bfloat16 -> float32 (metrics need the precision);
    float32/float64 keep their dtype with range ``data_range`` (default 1.0).
    """
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise DataError(f"expected a torch tensor or numpy array of pixels, got {type(x).__name__}")
    t = to_tensor(x)
    if t.dtype == torch.uint8:
        return t.to(torch.float32), float(255 if data_range is None else data_range)
    if not t.is_floating_point():
        raise DataError(f"pixels have dtype {t.dtype}; expected uint8 in [0, 255] or floats in [0, 1]")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return t, float(1.0 if data_range is None else data_range)


def to_unit_nchw(images_bhwc: torch.Tensor | np.ndarray, *, data_range: float | None = None) -> torch.Tensor:
    """(B, H, W, 3) pixels in either convention -> float (B, 3, H, W) in [0, 1]."""
    x, rng = as_float_pixels(images_bhwc, data_range=data_range)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"expected images of shape (B, H, W, 3), got {tuple(x.shape)}")
    return (x / rng).permute(0, 3, 1, 2)  # (B, 3, H, W)


@dataclass(frozen=True)
class Unavailable:
    """A metric that cannot be computed because its standard weight file is not present."""

    metric: str
    env_var: str
    file_description: str

    @property
    def reason(self) -> str:
        return f"unavailable: set {self.env_var} to the path of {self.file_description}"

    def __str__(self) -> str:
        return f"{self.metric} {self.reason}"


def resolve_weights(path: str | os.PathLike | None, env_var: str, *, found: Iterable[Path | None] = ()) -> Path | None:
    """The weight file to use: ``path`` if given, else ``$env_var`` if set and non-empty, else
    the first existing file of ``found`` (where the reference packages keep theirs:
    :func:`hub_checkpoint`, :func:`package_file`)."""
    if path is not None:
        return Path(path)
    value = os.environ.get(env_var, "").strip()
    if value:
        return Path(value)
    return next((p for p in found if p is not None and p.is_file()), None)


def hub_checkpoint(name: str) -> Path:
    """``name`` in the torch hub cache, where torchvision and pytorch-fid download their weights
    (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def package_file(package: str, relative: str) -> Path | None:
    """A data file shipped inside an installed package (found without importing it), or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read a .pth/.pt state dict (safe, tensors only) or a .safetensors file."""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{what} {path} is not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what} {path} is not a plain PyTorch state dict ({first_line})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} {path} holds a {type(state).__name__}, expected a state dict of tensors")
    return dict(state)


def load_checked(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    what: str,
    *,
    ignore_prefixes: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``module``, naming the file and key on any mismatch.

    Keys starting with ``ignore_prefixes`` (classifier heads the metric never uses) are
    skipped. BatchNorm's ``num_batches_tracked`` may be absent: files written before it
    existed lack it, and it plays no part in evaluation.
    """
    ignore = tuple(ignore_prefixes)
    expected = module.state_dict()
    # Unexpected keys first: they say "wrong file" more plainly than a missing key would.
    unexpected = [k for k in state if k not in expected and not k.startswith(ignore)]
    if unexpected:
        raise CheckpointError(f"{what} {path} has the unexpected key {unexpected[0]!r}: it is not the expected weight file")
    for key, param in expected.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            raise CheckpointError(f"{what} {path} lacks the key {key!r}: it is not the expected weight file")
        if state[key].shape != param.shape:
            raise CheckpointError(
                f"{what} {path} has {key!r} of shape {tuple(state[key].shape)}, expected {tuple(param.shape)}"
            )
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def load_feature_net(net: torch.nn.Module, weights: str | os.PathLike | None, *, env_var: str, metric: str,
                     file_name: str, what: str, device: torch.device | str | None = None,
                     ignore_prefixes: Iterable[str] = (), found: Iterable[Path | None] = ()) -> torch.nn.Module | Unavailable:
    """``net`` with the weights of the standard file ``weights`` (else ``$env_var``), frozen and in
    eval mode on ``device``; :class:`Unavailable` when no file is named. Raises CheckpointError
    when the named file is missing or is not the expected one."""
    path = resolve_weights(weights, env_var, found=found)
    if path is None:
        return Unavailable(metric, env_var, file_name)
    load_checked(net, read_state_dict(path, what), path, what, ignore_prefixes=ignore_prefixes)
    return net.to(device).eval().requires_grad_(False)
