"""The ``hma`` command line: parse, call one library function, print.

Each command group lives in :mod:`hma.commands` as a module with ``register(subparsers)``;
this file only wires them together and turns user errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from hma import __version__
from hma.errors import HmaError
from hma.progress import progress_bars

# Command modules under hma.commands, in the order they appear in `hma --help`.
COMMAND_MODULES = [
    "data",
    "tokenizer",
    "train",
    "model",
    "apps",
    "eval",
    "experiment",
    "demo",
    "bench",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is nothing to show: no default
    (None), an on/off flag, or a help text that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS or isinstance(action.default, bool)
                or "default" in text):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Every ``hma`` (sub)command's parser: defaults shown in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """argparse's one-line error; a command group called without its command (``hma``,
        ``hma data``) first prints its help, which lists the commands it has."""
        groups = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        missing = message.partition("the following arguments are required: ")[2].split(", ")
        if any(argparse._get_action_name(a) in missing for a in groups):
            self.print_help(sys.stderr)  # it starts with the usage line
            self.exit(2, f"\n{self.prog}: error: {message}\n")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hma", description="Action-video world models for robots.")
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
        with progress_bars(not vars(args).get("no_progress", False)):
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
