"""argparse ``type=`` callables for every number and device an ``hma`` command takes.

A value outside its domain (a NaN learning rate, 0 threads, a window of one frame, port 70000)
stops at parsing with argparse's one line, ``hma train: error: argument --lr: expected a finite
number > 0, got nan``, instead of a traceback or a silent replacement deep inside a run.
``tests/test_cli.py`` checks that every numeric option of every command takes one of these.
"""

from __future__ import annotations

import argparse
import math


class Number:
    """An int or a finite float in the range ``low``..``high`` (either end open, or absent)."""

    def __init__(self, kind: type = float, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, noun: str | None = None) -> None:
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.noun = noun or ("an integer" if kind is int else "a finite number")

    @property
    def expected(self) -> str:
        """What a valid value is, in words: ``"a finite number in [0, 1)"``."""
        if self.low is not None and self.high is not None:
            return f"{self.noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{self.noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{self.noun} {'<' if self.high_open else '<='} {self.high:g}"
        return self.noun

    def contains(self, value: float) -> bool:
        """Whether ``value`` (already a number) lies in the domain."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text.strip()}")
        return value

    def __repr__(self) -> str:
        return f"Number({self.expected})"


# Counts: steps, episodes, frames, batch sizes, threads, widths.
positive_int = Number(int, 1)
# Seeds, warm-up steps, pixels of shift, intervals where 0 means off.
non_negative_int = Number(int, 0)
# A window must hold a frame and the one it predicts.
window_frames = Number(int, 2)
# 0 asks the operating system for a free port.
port = Number(int, 0, 65535, noun="a port number")
# Learning rates, minutes, frame rates, temperatures of a mixture.
positive_float = Number(float, 0, low_open=True)
# Weights and noise levels where 0 means none; sampling temperature (0: greedy).
non_negative_float = Number(float, 0)
# Signed factors (logit adjustment, guidance weight): any finite number.
finite_float = Number(float)
# A share of a whole that must leave something over: EMA decay, held-out fraction, action dropout.
fraction = Number(float, 0, 1, high_open=True)
# A share that may be all of it: corruption rate.
share = Number(float, 0, 1)
# A share that must keep something: the part of the training episodes trained on, the real share of a batch.
nonzero_share = Number(float, 0, 1, low_open=True)


def at_least(low: int) -> Number:
    """An integer >= ``low`` (e.g. 3 random-action draws behind ΔPSNR)."""
    return Number(int, low)


def device(text: str) -> str:
    """A torch device this machine has: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
    (:func:`hma.device.resolve_device`); the name is kept as given for the command to resolve."""
    from hma.device import resolve_device
    from hma.errors import ConfigError

    try:
        resolve_device(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


DEVICE_HELP = "torch device: auto, cpu, cuda, cuda:N or mps (default: auto, cuda if available, else cpu)"
