"""The simulators' own chatter, kept off the terminal unless asked for.

robosuite logs a handful of WARNING lines when imported (no private macro file, optional
robot models missing) and an INFO line per environment built; Meta-World's expert policies
raise a ``UserWarning`` while they act. None of it is about the data being generated, so
:class:`SimulatorOutput` records it and shows it only when ``verbose`` (``hma data generate
--verbose``). A warning counts as the simulators' when it is attributed to a file of theirs or
of hma's adapters of them (``hma.data.sim``: gymnasium attributes its checks to the caller);
hma's messages and warnings raised anywhere else pass through untouched.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Callable, TextIO

# Python packages of the simulators and what they bring in: a warning attributed to a file
# inside one of them is theirs.
SIMULATOR_PACKAGES = ("robosuite", "metaworld", "gymnasium", "gym_pusht", "mujoco", "pymunk", "pygame")
# The loggers they write to; robosuite's is not named after its package.
SIMULATOR_LOGGERS = ("robosuite_logs", "robosuite", "metaworld", "gymnasium", "mujoco", "pymunk._callbacks")


@functools.cache
def _simulator_roots() -> tuple[str, ...]:
    """The folders of the installed simulator packages and of hma's adapters."""
    roots = [str(Path(__file__).parent)]
    for name in SIMULATOR_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)  # finds the package without importing it
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            roots += [str(Path(p)) for p in spec.submodule_search_locations or []]
    return tuple(os.path.join(root, "") for root in roots)  # each with its trailing separator


def from_simulator(filename: str) -> bool:
    """Whether a warning attributed to ``filename`` comes from a simulator."""
    return str(filename).startswith(_simulator_roots())


class _LogCapture(logging.Filter):
    """A logger filter: records each line and lets it through only when verbose."""

    def __init__(self, output: SimulatorOutput) -> None:
        super().__init__()
        self.output = output

    def filter(self, record: logging.LogRecord) -> bool:
        self.output.lines.append(f"[{record.name} {record.levelname}] {record.getMessage()}")
        return self.output.verbose


class SimulatorOutput:
    """Within ``with SimulatorOutput(verbose) as out:`` the simulators' warnings and log lines
    are recorded in ``out.lines`` and shown only when ``verbose``.

    Enter it before a simulator is first imported to catch what it says at import. Python's
    warning state is process-wide, so this belongs around a whole command, not inside threads.
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.lines: list[str] = []
        self._warnings = warnings.catch_warnings()
        self._filter = _LogCapture(self)

    def __enter__(self) -> SimulatorOutput:
        self._warnings.__enter__()  # restores the warning filters and showwarning on exit
        warnings.showwarning = functools.partial(self._show, warnings.showwarning)
        for name in SIMULATOR_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for name in SIMULATOR_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        self._warnings.__exit__(exc_type, exc, tb)

    def _show(self, show: Callable[..., None], message: Warning | str, category: type[Warning], filename: str,
              lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
        """``warnings.showwarning`` while entered: a simulator's warning is recorded, and shown by
        ``show`` (what was there before) only when verbose."""
        if from_simulator(filename):
            self.lines.append(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
            if not self.verbose:
                return
        show(message, category, filename, lineno, file, line)
