"""Run torch on one thread inside a block, then restore the previous count.

The test models are tiny, and on a shared 2-core machine a second OpenMP thread mostly
waits for the first (measured 12-20x slower steps under load).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
