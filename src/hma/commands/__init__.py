"""Command groups of the ``hma`` CLI; each module exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse


def set_threads(n: int | None) -> None:
    """``--threads N``: torch's CPU threads (None leaves torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` on a long-running command (``hma.cli.main`` turns off every bar it draws)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def explicit_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The command ``args`` were parsed from with every option spelled out, defaults included,
    so a results section shows exactly how to run it again (``hma experiment NAME --out ...``).

    Options left unset (None) and off flags are left out; ``--no-progress`` changes nothing
    a result records and is never shown.
    """
    import shlex

    parts = parser.prog.split()
    for action in parser._actions:
        value = vars(args).get(action.dest)
        if not action.option_strings or action.dest in ("help", "no_progress") or value is None or value is False:
            continue
        flag = max(action.option_strings, key=len)
        if value is True:
            parts.append(flag)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        parts += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in values)]
    return shlex.join(parts)
