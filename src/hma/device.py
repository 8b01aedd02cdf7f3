"""The one place a device name becomes a ``torch.device``.

``hma.load``, the envs, the apps and every ``--device`` option go through :func:`resolve_device`,
so they share one default (the GPU when there is one, else the CPU) and one error for a device
that this machine cannot run on, instead of torch's own error from deep inside a model call.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hma.errors import ConfigError

if TYPE_CHECKING:
    import torch

AUTO = "auto"
# The device types hma runs on: torch's own names, with an optional index (cuda:1). "meta"
# (torch's device of shapes without data) is accepted for tests and left out of the advice.
_NAME = re.compile(r"(cpu|cuda|mps|meta)(?::(\d+))?")


def resolve_device(device: "str | torch.device | None" = None, *, what: str = "device") -> "torch.device":
    """``device`` as a ``torch.device``: None or ``"auto"`` is the GPU when there is one, else the CPU;
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` must be available here.

    An unknown name or a device this machine lacks is a :class:`ConfigError` naming it (``what``
    is how the caller spells the setting, e.g. ``"--device"``) and the devices there are.
    """
    import torch

    if device is None or device == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device)
    match = _NAME.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(f"{what} {text!r} is unknown; expected {_expected()}")
    kind, index = match.group(1), match.group(2)
    problem = _unavailable(kind, None if index is None else int(index))
    if problem:
        raise ConfigError(f"{what} {text!r}: {problem}; expected {_expected()}")
    return torch.device(kind if index is None else f"{kind}:{index}")


def _unavailable(kind: str, index: int | None) -> str | None:
    """Why this machine cannot run on device ``kind[:index]``, or None when it can."""
    import torch

    if kind == "cuda":
        if not torch.backends.cuda.is_built():
            return "CUDA is not available in this torch build"
        count = torch.cuda.device_count()
        if count == 0:
            return "torch sees no CUDA GPU on this machine"
        if index is not None and index >= count:
            return f"this machine has {count} CUDA GPU{'s' if count > 1 else ''}"
    if kind == "mps" and not torch.backends.mps.is_available():
        return "MPS (Apple GPU) is not available here"
    if kind in ("cpu", "mps", "meta") and index not in (None, 0):
        return f"{kind} has only index 0"
    return None


def _expected() -> str:
    """The device names this machine accepts, for an error message."""
    import torch

    names = ["cpu"]
    count = torch.cuda.device_count() if torch.backends.cuda.is_built() else 0
    if count:
        names += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    if torch.backends.mps.is_available():
        names.append("mps")
    return f"{', '.join(names)} or {AUTO}"
