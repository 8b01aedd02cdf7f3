"""Arithmetic of generation: fp32, bf16 autocast, or int8 dynamic quantization of the linear layers.

- ``fp32``: as trained; the :class:`~hma.sampling.engine.Engine`'s default (the exact reference).
- ``bf16``: ``torch.autocast`` in bfloat16 around every model call (fast on GPUs and on
  CPUs with native bf16 matmuls; elsewhere it is emulated and slower).
- ``int8``: a copy of the model whose ``nn.Linear`` layers are dynamically quantized to
  int8 (PyTorch's ``quantize_dynamic``: int8 weights, activations quantized per call).
  CPU only.
- ``auto``: the default of every command and of :func:`~hma.sampling.generators.frame_generator`;
  :func:`resolve` picks int8 on a CPU with int8 dot-product instructions (AVX-512 VNNI, AMX,
  AVX-VNNI: there int8 generation measured 2.0x fp32), bf16 on CUDA, fp32 otherwise, and
  says which and why ("precision auto -> int8 (avx512_vnni)").

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
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from hma.errors import ConfigError


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"
    AUTO = "auto"  # one of the others, by what the machine has (:func:`resolve`)

    @classmethod
    def parse(cls, text: "str | Precision") -> "Precision":
        try:
            return cls(text)
        except ValueError:
            raise ConfigError(f"precision {text!r} is unknown, expected one of {', '.join(p.value for p in cls)}") from None


PRECISIONS = tuple(p.value for p in Precision if p is not Precision.AUTO)  # the arithmetic a model runs in
# CPU flags (/proc/cpuinfo) of the int8 dot-product instructions that quantized linear layers
# run on (fbgemm): AMX tiles, AVX-512 VNNI, AVX-VNNI; the first one found is named as the reason.
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them; empty where it has none (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision generation runs at and why: as asked, or what ``auto`` found on this machine."""

    asked: Precision
    precision: Precision
    reason: str = ""

    def __str__(self) -> str:
        if self.asked is Precision.AUTO:
            return f"precision auto -> {self.precision.value} ({self.reason})"
        return f"precision {self.precision.value}"


def resolve(precision: "str | Precision", device: "str | torch.device", *, compile: bool = False) -> PrecisionChoice:
    """The precision to generate with on ``device``: ``auto`` becomes int8 on a CPU with one of
    :data:`INT8_FLAGS`, bf16 on a CUDA device with bf16, fp32 otherwise (and whenever the trunk is
    compiled, which int8 does not allow); any other precision stays as asked."""
    asked = Precision.parse(precision)
    if asked is not Precision.AUTO:
        return PrecisionChoice(asked, asked)
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(asked, Precision.BF16, "CUDA")
        return PrecisionChoice(asked, Precision.FP32, "CUDA device without bf16")
    if device.type != "cpu":
        return PrecisionChoice(asked, Precision.FP32, f"{device.type} device")
    found = [flag for flag in INT8_FLAGS if flag in cpu_flags()]
    if not found:
        return PrecisionChoice(asked, Precision.FP32, f"CPU without {', '.join(INT8_FLAGS)}")
    if compile:
        return PrecisionChoice(asked, Precision.FP32, f"{found[0]}, but a compiled trunk cannot be int8")
    return PrecisionChoice(asked, Precision.INT8, found[0])


def prepare(model: nn.Module, precision: "str | Precision") -> nn.Module:
    """The model to generate with at ``precision``: ``model`` itself, or its int8 copy."""
    device = next(model.parameters()).device
    precision = resolve(precision, device).precision
    if precision is not Precision.INT8:
        return model
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
    if resolve(precision, device).precision is Precision.BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
