"""Arithmetic of generation: fp32, bf16 autocast, or int8 dynamic quantization of the linear layers.

- ``fp32``: as trained; the default.
- ``bf16``: ``torch.autocast`` in bfloat16 around every model call (fast on GPUs and on
  CPUs with native bf16 matmuls; elsewhere it is emulated and slower).
- ``int8``: a copy of the model whose ``nn.Linear`` layers are dynamically quantized to
  int8 (PyTorch's ``quantize_dynamic``: int8 weights, activations quantized per call).
  CPU only.

Which precision keeps quality is measured, not assumed: ``hma bench --precision`` prints
each one's speed beside its token agreement with fp32.

Independently of the precision, :func:`compile_trunk` puts the trunk through
``torch.compile`` (opt-in: ``compile=True`` on the engine, ``hma bench --compile``). The
first frames then pay the compilation (``hma bench`` reports it on its own line); the
compiled graphs are kept in TorchInductor's on-disk caches (``/tmp/torchinductor_USER``
unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise), so a later process with the same
shapes skips most of the compiling.
"""

from __future__ import annotations

import contextlib
import warnings
from enum import Enum

import torch
from torch import nn

from hma.errors import ConfigError


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"

    @classmethod
    def parse(cls, text: "str | Precision") -> "Precision":
        try:
            return cls(text)
        except ValueError:
            raise ConfigError(f"precision {text!r} is unknown, expected one of {', '.join(p.value for p in cls)}") from None


PRECISIONS = tuple(p.value for p in Precision)


def prepare(model: nn.Module, precision: "str | Precision") -> nn.Module:
    """The model to generate with at ``precision``: ``model`` itself, or its int8 copy."""
    precision = Precision.parse(precision)
    if precision is not Precision.INT8:
        return model
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError(f"precision 'int8' runs on the CPU only, the model is on {device}; expected fp32 or bf16 there")
    with warnings.catch_warnings():  # quantize_dynamic is deprecated in favour of torchao, which is not installed
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def compile_trunk(model: nn.Module) -> nn.Module:
    """Compile the blocks of ``model.trunk`` in place with ``torch.compile``; weights and
    state-dict keys are unchanged. Returns the model.

    Each block is compiled on its own, so the blocks (one class, one code path) share one
    graph instead of a deep trunk unrolling into a graph per depth (the base preset's 32
    blocks compiled as one graph took 15 minutes here); shapes are dynamic, so the frame
    count and cache slot of each call do not each make a graph."""
    if any(type(m).__module__.startswith("torch.ao.") for m in model.modules()):
        raise ConfigError("compile=True does not apply to an int8 (dynamically quantized) model; expected fp32 or bf16")
    for block in model.trunk.blocks:
        block.compile(dynamic=True)
    return model


def autocast(precision: "str | Precision", device: torch.device) -> contextlib.AbstractContextManager:
    """The context every model call of a generation runs in."""
    if Precision.parse(precision) is Precision.BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
