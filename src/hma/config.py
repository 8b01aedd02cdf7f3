"""World-model configuration and the registry of named presets.

A :class:`ModelConfig` says everything needed to rebuild a model from
``model.safetensors``: trunk size, token kind and vocabulary, how actions are injected,
the objective's knobs and the embodiments (action size, chunk length, normalization
statistics). It round-trips through ``config.json`` with :meth:`ModelConfig.to_json` /
:meth:`ModelConfig.from_json`.

Presets (``PRESETS``) fix the trunk; the tokenizer and the data fill in the token grid,
vocabulary and embodiments when a run starts.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from hma.data.windows import DEFAULT_FRAME_HZ
from hma.errors import ConfigError
from hma.io import is_int, is_number


class Injection(enum.Flag):
    """How the action embedding enters the trunk (paper sec. 3.2 ablates all four).

    Modes combine with ``+`` on the command line: ``concat+modulate`` is the reference default.
    """

    CONCAT = enum.auto()  # one action token appended to each frame's spatial tokens
    MODULATE = enum.auto()  # adaLN shift/scale of every block from the action embedding
    ADD = enum.auto()  # action embedding added to every spatial token of the frame
    CROSS_ATTENTION = enum.auto()  # frame tokens cross-attend to the action embeddings so far

    @classmethod
    def parse(cls, text: str) -> "Injection":
        names = {"concat": cls.CONCAT, "modulate": cls.MODULATE, "add": cls.ADD,
                 "cross_attention": cls.CROSS_ATTENTION, "cross-attention": cls.CROSS_ATTENTION}
        flags = cls(0)
        for part in text.lower().split("+"):
            if part.strip() not in names:
                raise ConfigError(f"injection mode {part!r} in {text!r} is unknown, expected '+'-joined names from concat, modulate, add, cross_attention")
            flags |= names[part.strip()]
        if not flags:
            raise ConfigError(f"injection {text!r} names no mode, expected e.g. 'concat+modulate'")
        return flags

    def to_text(self) -> str:
        order = [(Injection.CONCAT, "concat"), (Injection.MODULATE, "modulate"), (Injection.ADD, "add"),
                 (Injection.CROSS_ATTENTION, "cross_attention")]
        return "+".join(name for flag, name in order if flag in self)


class TokenKind(str, enum.Enum):
    """What a tokenizer makes and a world model predicts: token ids (MaskGIT) or latents (MAR)."""

    DISCRETE = "discrete"
    CONTINUOUS = "continuous"


class RunKind(str, enum.Enum):
    """What a run trains (``hma train --model``): the HMA world model or the diffusion baseline."""

    HMA = "hma"
    DIFFUSION = "diffusion"


class Setting(str, enum.Enum):
    """The paper's four problem settings: one model, different masks (sec. 3.3).

    ``MIXED`` draws one of the four per sample, so a single batch mixes them.
    """

    VIDEO = "video"  # passive video: predict frames, actions hidden
    FORWARD = "forward"  # forward dynamics: predict frames given actions
    FULL = "full"  # full dynamics: predict frames and actions jointly
    POLICY = "policy"  # policy: predict actions given frames
    MIXED = "mixed"

    @classmethod
    def parse(cls, text: str) -> "Setting":
        try:
            return cls(text.lower())
        except ValueError:
            raise ConfigError(f"setting {text!r} is unknown, expected one of {', '.join(s.value for s in cls)}") from None


# JSON checks per annotation (strings under `from __future__ import annotations`).
_JSON_TYPES = {
    "str": lambda x: isinstance(x, str),
    "int": is_int,
    "float": is_number,
    "tuple[int, int]": lambda x: isinstance(x, (list, tuple)) and len(x) == 2 and all(is_int(v) for v in x),
    "list[float]": lambda x: isinstance(x, list) and all(is_number(v) for v in x),
    "list[str]": lambda x: isinstance(x, list) and all(isinstance(v, str) for v in x),
    "dict[str, EmbodimentSpec]": lambda x: isinstance(x, dict),
}


def _check_json_types(cls: type, d: dict[str, Any], *, where: str) -> None:
    """Reject a JSON field of the wrong type, so a damaged config.json fails with its field
    named rather than deep inside a model constructor."""
    for f in dataclasses.fields(cls):
        check = _JSON_TYPES.get(f.type)
        if f.name in d and check is not None and not check(d[f.name]):
            raise ConfigError(f"{where} field {f.name!r} is {d[f.name]!r}, expected {f.type}")


@dataclass
class EmbodimentSpec:
    """One robot as the model sees it: the stem input is ``action_dim * chunk`` numbers."""

    name: str
    action_dim: int  # per control step
    chunk: int  # control steps per frame (control_hz / frame_hz)
    mean: list[float]  # (chunk * action_dim,) normalization statistics of the training set
    std: list[float]  # (chunk * action_dim,)
    action_names: list[str] = field(default_factory=list)
    control_hz: float = 0.0
    # The proprioceptive state the model reads out per frame (a state head), when its data
    # recorded one: the names of its values and their training-set statistics. Empty: no state.
    state_names: list[str] = field(default_factory=list)
    state_mean: list[float] = field(default_factory=list)
    state_std: list[float] = field(default_factory=list)

    @property
    def chunk_dim(self) -> int:
        return self.action_dim * self.chunk

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    def __post_init__(self) -> None:
        if len(self.mean) != self.chunk_dim or len(self.std) != self.chunk_dim:
            raise ConfigError(
                f"embodiment {self.name!r}: statistics have {len(self.mean)}/{len(self.std)} entries, "
                f"expected action_dim * chunk = {self.chunk_dim}"
            )
        if len(self.state_mean) != self.state_dim or len(self.state_std) != self.state_dim:
            raise ConfigError(
                f"embodiment {self.name!r}: state statistics have {len(self.state_mean)}/{len(self.state_std)} "
                f"entries, expected one per state name ({self.state_dim})"
            )

    @property
    def normalizer(self):  # -> hma.data.windows.ActionNormalizer (imported lazily: model must not need data)
        import numpy as np

        from hma.data.windows import ActionNormalizer

        return ActionNormalizer(mean=np.asarray(self.mean, dtype=np.float32), std=np.asarray(self.std, dtype=np.float32))

    @property
    def state_normalizer(self):  # -> ActionNormalizer of the state, or None without one
        import numpy as np

        from hma.data.windows import ActionNormalizer

        if not self.state_dim:
            return None
        return ActionNormalizer(mean=np.asarray(self.state_mean, dtype=np.float32),
                                std=np.asarray(self.state_std, dtype=np.float32))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EmbodimentSpec":
        if not isinstance(d, dict):
            raise ConfigError(f"embodiment spec is {d!r}, expected a JSON object")
        _check_json_types(cls, d, where=f"embodiment {d.get('name')!r}")
        return cls(**d)


# The ModelConfig fields that shape the training objective, not the weights: a fine-tune may change them.
OBJECTIVE_FIELDS = ("changed_token_weight", "action_dropout", "corrupt_max", "visible_past")


@dataclass
class ModelConfig:
    """Everything that defines a world model's architecture and objective."""

    kind: str = "discrete"  # "discrete" (MaskGIT over token ids) or "continuous" (MAR over latents)
    num_blocks: int = 4
    width: int = 128
    num_heads: int = 4
    mlp_ratio: float = 4.0
    grid: tuple[int, int] = (8, 8)  # tokens per frame (h, w)
    num_frames: int = 8  # training window T
    frame_hz: float = DEFAULT_FRAME_HZ
    vocab_size: int = 1024  # discrete only
    # Output layer factorization (discrete): a vocabulary of V ids is predicted as
    # ``vocab_factors`` independent digits of size ceil(V ** (1 / factors)), as the reference
    # does for its 2^18 LFQ vocabulary (two 512-way heads instead of one 262144-way one).
    vocab_factors: int = 1
    latent_channels: int = 4  # continuous only
    injection: str = "concat+modulate"
    # Objective
    corrupt_max: float = 0.2  # MaskGIT random-token corruption: up to this fraction of inputs
    action_loss_weight: float = 1.0
    # The state head's loss (normalized MSE), for embodiments whose data records a state: an
    # auxiliary readout, weighted low so that it does not compete with the video objective.
    state_loss_weight: float = 0.1
    # Weight of a masked token whose id differs from the same position's in the frame before
    # (discrete only). Most tokens of robot video repeat the previous frame; the few that
    # change carry what the actions did, and a plain mean lets a model that copies the past
    # look almost perfect.
    changed_token_weight: float = 1.0
    # Action dropout: the share of frames whose action is shown hidden (the learned "hidden
    # action" embedding) in training, so the model also learns the action-free prediction that
    # classifier-free guidance on actions subtracts at sampling (MaskGITSampling.guidance).
    action_dropout: float = 0.0
    # The share of training samples whose past (the frames before a random one) is fully
    # visible, as it is when generation predicts the next frame (objectives.sample_masks).
    visible_past: float = 0.0
    diffusion_width: int = 256  # MAR per-token diffusion head (reference: 1024 wide, 4 blocks)
    diffusion_blocks: int = 3
    diffusion_train_steps: int = 1000
    embodiments: dict[str, EmbodimentSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.grid = (int(self.grid[0]), int(self.grid[1]))
        if self.kind not in {k.value for k in TokenKind}:
            raise ConfigError(f"model kind {self.kind!r} is unknown, expected 'discrete' or 'continuous'")
        if self.width % self.num_heads:
            raise ConfigError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.changed_token_weight <= 0:
            raise ConfigError(f"changed_token_weight={self.changed_token_weight} is invalid; expected a positive weight")
        if not 0 <= self.action_dropout < 1:
            raise ConfigError(f"action_dropout={self.action_dropout} is invalid; expected a share in [0, 1)")
        if not 0 <= self.visible_past <= 1:
            raise ConfigError(f"visible_past={self.visible_past} is invalid; expected a share in [0, 1]")
        if not 0 <= self.corrupt_max <= 1:
            raise ConfigError(f"corrupt_max={self.corrupt_max} is invalid; expected a share in [0, 1]")
        if self.vocab_factors < 1:
            raise ConfigError(f"vocab_factors={self.vocab_factors} must be at least 1")
        Injection.parse(self.injection)
        self.embodiments = {
            k: v if isinstance(v, EmbodimentSpec) else EmbodimentSpec.from_json(v) for k, v in self.embodiments.items()
        }

    @property
    def injection_flags(self) -> Injection:
        return Injection.parse(self.injection)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def factor_size(self) -> int:
        """Size of one vocabulary digit (the whole vocabulary when unfactorized)."""
        f = math.ceil(self.vocab_size ** (1.0 / self.vocab_factors))
        while f ** self.vocab_factors < self.vocab_size:  # guard float rounding
            f += 1
        return f

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes``; the embodiment table is copied so the two never share it."""
        return dataclasses.replace(self, **{"embodiments": dict(self.embodiments), **changes})

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid"] = list(self.grid)
        d["embodiments"] = {k: v.to_json() for k, v in self.embodiments.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model config has unknown field(s) {', '.join(unknown)}, expected only {', '.join(sorted(known))}")
        _check_json_types(cls, d, where="model config")
        return cls(**d)


# Named trunks. ``base`` follows the paper's HMA-Base: 32 blocks, width 256, 16x16 tokens,
# 12-frame window, and the reference's 2^18 lookup-free vocabulary factorized into two
# 512-way digits (input: sum of two 512-entry embeddings; output: two 512-way heads), so
# vocabulary layers cost 4 * 512 * 256 = 0.5M weights instead of 2 * 2^18 * 256 = 134M.
# With concat+modulate and one embodiment that puts discrete Base at ~47M parameters
# (paper: 44M): ~33.6M attention+MLP, ~12.6M adaLN (shift/scale for three norms per block),
# ~0.5M vocabulary layers, the rest norms, positions and the stem/head. Runs on real tokenizers replace
# vocab_size/grid with the tokenizer's own.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(num_blocks=4, width=128, num_heads=4, grid=(8, 8), num_frames=8, vocab_size=1024,
                        diffusion_width=256, diffusion_blocks=3),
    # Trunks that train to something measurable in a few CPU minutes (the experiments' and the demo's):
    "micro": ModelConfig(num_blocks=2, width=64, num_heads=4, grid=(8, 8), num_frames=4, vocab_size=1024,
                         diffusion_width=128, diffusion_blocks=2),
    "demo": ModelConfig(num_blocks=2, width=128, num_heads=4, grid=(8, 8), num_frames=4, vocab_size=1024,
                        diffusion_width=256, diffusion_blocks=3),
    "base": ModelConfig(num_blocks=32, width=256, num_heads=8, grid=(16, 16), num_frames=12,
                        vocab_size=2 ** 18, vocab_factors=2, diffusion_width=1024, diffusion_blocks=4),
    "xl": ModelConfig(num_blocks=32, width=768, num_heads=12, grid=(16, 16), num_frames=12,
                      vocab_size=2 ** 18, vocab_factors=2, diffusion_width=1024, diffusion_blocks=4),
}


def preset(name: str, **changes: Any) -> ModelConfig:
    """A copy of preset ``name`` with ``changes`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is unknown, expected one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes)


@dataclass(frozen=True)
class Recipe:
    """How hma trains unless told otherwise: the settings measured best on a few CPU minutes.

    ``hma train``, ``hma finetune``, ``hma tokenizer train`` and :class:`hma.train.TrainConfig`
    default to these, and ``hma demo --from-scratch`` trains with those defaults (it passes none
    of these flags), so the demo and the CLI share this one definition. Measured on the demo's
    data (five simulated robots, 16 episodes each, 64x64 frames) on 2 CPU cores; a much larger
    trunk (``--preset base``) may want a lower learning rate.

    The config classes keep their own defaults (``ModelConfig``, ``TokenizerConfig``): those
    are what a ``config.json`` without the field reads as, so they cannot change.
    """

    # The trunk: the `demo` preset, the tiny preset's width with two blocks and 4-frame windows
    # (frames at the presets' 10 Hz, DEFAULT_FRAME_HZ). Two blocks instead of four: twice the
    # steps in the same minutes; on 32 episodes per robot in 5 min, mean ΔPSNR 0.14 dB (3 of 5
    # robots above 0) vs 0.03 (2 of 5). Short windows and a higher learning rate take the model
    # from worse than a unigram model to a held-out perplexity near 4 within the budget.
    preset: str = "demo"
    lr: float = 1e-3
    # Forward dynamics (full dynamics hides actions) with the tokens that change weighted
    # 10x: with the patch tokenizer the changed tokens are exactly the patches that moved.
    # On the demo's data, 5 min each: ΔPSNR interval above 0 for 5 of 5 robots at 10x,
    # 2 of 5 at 5x (mean 0.40 vs 0.28 dB).
    setting: str = "forward"
    changed_token_weight: float = 10.0
    # The tokenizer (measured on the discrete one). Each token encoded from its own 8x8 patch,
    # 625 codes: tokens of the static background no longer flip when the robot moves (26.9% ->
    # 0.1% of static tokens), and the ceiling rose 0.5-1.5 dB per robot against the
    # convolutional encoder with 4375 codes. Pixels that differ from the background weigh 5x in
    # the loss: motion PSNR on the counterfactual branches rose 1.2-1.5 dB for four of five
    # robots at 8x8 tokens.
    encoder: str = "patch"
    fsq_levels: tuple[int, ...] = (5, 5, 5, 5)
    foreground_weight: float = 5.0


RECIPE = Recipe()
