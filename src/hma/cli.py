"""The ``hma`` command line: parse, call one library function, print.

Each command group lives in :mod:`hma.commands` as a module with ``register(subparsers)``;
this file only wires them together and turns user errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hma import __version__
from hma.errors import HmaError

# Command modules under hma.commands, in the order they appear in `hma --help`.
COMMAND_MODULES = [
    "data",
    "tokenizer",
    "train",
    "model",
    "sim",
    "eval",
    "demo",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hma", description="Action-video world models for robots.")
    parser.add_argument("--version", action="version", version=f"hma {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"hma.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for the results it records
    try:
        result = args.func(args)
    except HmaError as e:
        print(f"hma: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave cannot be read or written
        where = f" ({e.filename})" if e.filename else ""
        print(f"hma: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hma: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
