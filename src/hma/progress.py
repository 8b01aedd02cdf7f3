"""Progress bars: tqdm's, all switched off for the length of one command by ``--no-progress``.

Library functions that take ``progress=`` still decide for their own bar; :func:`progress_bars`
turns off every bar drawn inside it, including those of functions without the argument.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

_enabled = True


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within this block, bars are drawn only if ``enabled`` (and the enclosing block allows them)."""
    global _enabled
    before, _enabled = _enabled, _enabled and enabled
    try:
        yield
    finally:
        _enabled = before


def bar(iterable: Iterable | None = None, *, show: bool = True, **kwargs: Any):
    """A ``tqdm.auto.tqdm`` bar, off when ``show`` is False or inside ``progress_bars(False)``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not (show and _enabled), **kwargs)


def write(text: str) -> None:
    """Print a line without breaking the bars being drawn."""
    from tqdm.auto import tqdm

    tqdm.write(text)
