"""Command groups of the ``hma`` CLI; each module exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` on a long-running command (``hma.cli.main`` turns off every bar it draws)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
