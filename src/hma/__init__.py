"""hma: action-video world models learned from heterogeneous robot data with masked autoregression."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from hma.run import LoadedRun

__version__ = "0.1.0"


def load(run: str | Path = "hma-tiny", **kwargs: Any) -> LoadedRun:
    """Load a run: ``hma.load(RUN) -> LoadedRun(model, tokenizer, embodiments)``. ``RUN`` is a run
    folder, a shipped run's name (default ``hma-tiny``, the model that comes with hma) or a Hub name;
    ``device=`` as the envs and apps take it (default: the GPU when there is one, else the CPU).

    Imported lazily so ``import hma`` stays light (no torch until a model is needed).
    """
    from hma.run import load as _load

    return _load(run, **kwargs)
