"""Runs and datasets by Hugging Face Hub name (``org/name``), through ``huggingface_hub``.

A local path always wins: ``resolve("runs/tiny")`` is that folder whenever it exists. Only
a name that is not a local path and reads as ``ORG/NAME`` goes to the Hub, whose own cache
and settings apply (``HF_HOME``/``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` serves the cached
snapshot without a network call).
"""

from __future__ import annotations

import re
from pathlib import Path

from hma.errors import ConfigError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_name(name: str | Path) -> bool:
    """Whether ``name`` is a Hub repo id rather than a local path (which must not exist)."""
    text = str(name)
    return not Path(text).exists() and not text.startswith((".", "/", "~")) and bool(_REPO_ID.match(text))


def resolve(name: str | Path, *, repo_type: str = "model", what: str = "run") -> Path:
    """``name`` as a local folder: itself, or the Hub snapshot of repo ``name`` (downloaded or cached)."""
    if not is_hub_name(name):
        return Path(name)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        raise ConfigError(f"{what} {str(name)!r} is not a local folder, and huggingface_hub is not installed to "
                          "fetch it from the Hub; expected a folder path") from None
    try:
        return Path(snapshot_download(repo_id=str(name), repo_type=repo_type))
    except LocalEntryNotFoundError:
        raise ConfigError(f"{what} {str(name)!r} is neither a local folder nor in the Hub cache, and the Hub cannot "
                          "be reached (HF_HUB_OFFLINE or no network); expected a folder path or a cached repo") from None
    except (RepositoryNotFoundError, HfHubHTTPError, OSError) as e:
        raise ConfigError(f"{what} {str(name)!r} is not a local folder and the Hub gave no {repo_type} repo of that "
                          f"name ({type(e).__name__}); expected a folder path or ORG/NAME of a {repo_type} repo") from None
