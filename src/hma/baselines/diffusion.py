"""Video diffusion baseline: an action-conditioned spatial-temporal DiT sampled with DDIM.

This is the IRASim-style comparison of the paper's Table 1: the same continuous latents,
the same trunk size (width, depth, heads), but each new frame is produced by denoising
it from pure noise over many DDIM steps instead of by a few masked unmasking steps.

Choices, and why:
- **Frame-wise autoregressive.** The model denoises the next frame given the clean past
  frames (IRASim's frame-level variant), so its per-frame cost is directly comparable to
  masked autoregression, which also makes one frame at a time.
- **Per-frame adaLN-Zero conditioning** (DiT / IRASim): frame i is modulated by
  ``timestep_embedding(tau_i) + action_stem(a_{i-1})``, the action that led into it (a
  learned vector for the first frame). Past frames are clean, tau = 0.
- **Causal temporal attention with rotary frame positions.** The past frames' keys and
  values do not depend on the frame being denoised, so sampling keeps them in a temporal
  KV cache and each DDIM step runs the network on one frame only. Rotary positions make
  attention depend on frame differences only, so cached keys keep their meaning while the
  window slides (each frame keeps the keys it had when committed, as in streaming
  transformers; until the window is full this equals re-running it exactly). The baseline is therefore as fast as this architecture allows, not a strawman
  that re-runs the whole window at every one of its 50 steps. The sampler is
  :class:`hma.sampling.ddim.DDIMEngine`.
- **Training** denoises the last frame of each window given the others (epsilon
  prediction, cosine noise schedule), exactly the situation it is sampled in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from einops import rearrange
from torch import nn

from hma.config import EmbodimentSpec, ModelConfig
from hma.errors import ConfigError, EmbodimentError


@dataclass(frozen=True)
class DiffusionConfig:
    """Size and inputs of the diffusion baseline; width/depth/heads match a world-model preset."""

    latent_channels: int  # C of the continuous tokenizer's latents
    grid: tuple[int, int]  # (h, w) of the latents
    num_frames: int  # training window T (past frames + the denoised one)
    action_dims: dict[str, int] = field(default_factory=dict)  # embodiment -> k*A
    d_model: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    patch: int = 1  # latents are cut into patch x patch squares, one token each
    train_timesteps: int = 1000
    sample_steps: int = 50

    def __post_init__(self) -> None:
        h, w = self.grid
        if h % self.patch or w % self.patch:
            raise ConfigError(f"latent grid {self.grid} is not divisible by patch size {self.patch}")
        if self.d_model % self.heads or (self.d_model // self.heads) % 2:
            raise ConfigError(f"d_model {self.d_model} is invalid for {self.heads} heads; expected an even head width")

    @property
    def num_tokens(self) -> int:
        h, w = self.grid
        return (h // self.patch) * (w // self.patch)

    def to_json(self) -> dict:
        return {**asdict(self), "grid": list(self.grid)}

    @classmethod
    def from_model_config(cls, model_config: ModelConfig, **changes: object) -> "DiffusionConfig":
        """The baseline of the same trunk size (width, depth, heads), grid, window and
        embodiments as a world model, over its continuous latents."""
        fields = dict(
            latent_channels=model_config.latent_channels, grid=model_config.grid,
            num_frames=model_config.num_frames, d_model=model_config.width, depth=model_config.num_blocks,
            heads=model_config.num_heads, mlp_ratio=model_config.mlp_ratio,
            action_dims={name: spec.chunk_dim for name, spec in model_config.embodiments.items()},
        )
        return cls(**{**fields, **changes})


def rotate_frames(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding over frame indices: x (..., L, Dh), positions (L,) float.

    Attention between two rotated vectors depends only on their position difference, so
    keys cached at any absolute frame index stay comparable as the window slides on.
    """
    half = x.shape[-1] // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)  # (Dh/2,)
    angles = positions.to(torch.float32)[:, None] * freqs[None]  # (L, Dh/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class FrameCache:
    """Temporal keys/values of the last frames, pre-allocated once, reused as a ring.

    ``slots`` = past window + 1: the frame being denoised writes its keys into the slot of
    the oldest frame, which it no longer sees, so memory stays constant for any horizon.
    """

    def __init__(self, *, depth: int, batch: int, tokens: int, heads: int, head_dim: int, slots: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = (depth, batch * tokens, heads, slots, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B*S, H, W+1, Dh)
        self.v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B*S, H, W+1, Dh)
        self.slots = slots
        self.frame = 0  # absolute index of the frame the next pass writes

    @property
    def slot(self) -> int:
        return self.frame % self.slots

    @property
    def filled(self) -> int:
        """Slots holding a past frame or the current one."""
        return min(self.frame + 1, self.slots)

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()


class DiTBlock(nn.Module):
    """Spatial attention, causal temporal attention and MLP, each adaLN-Zero modulated per frame."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_s = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.qkv_s = nn.Linear(d_model, 3 * d_model)
        self.out_s = nn.Linear(d_model, d_model)
        self.norm_t = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.qkv_t = nn.Linear(d_model, 3 * d_model)
        self.out_t = nn.Linear(d_model, d_model)
        self.norm_m = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        hidden = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d_model))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 9 * d_model))

    def forward(self, x: torch.Tensor, c: torch.Tensor, positions: torch.Tensor,
                cache: FrameCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, S, D), c (B, T, D), positions (T,). With a cache, T must be 1."""
        B, T, S, _ = x.shape
        mods = self.ada(c)[:, :, None].chunk(9, dim=-1)  # 9 x (B, T, 1, D)
        shift_s, scale_s, gate_s, shift_t, scale_t, gate_t, shift_m, scale_m, gate_m = mods

        h = self.norm_s(x) * (1 + scale_s) + shift_s  # (B, T, S, D)
        q, k, v = rearrange(self.qkv_s(h), "b t s (three h d) -> three (b t) h s d", three=3, h=self.heads)
        a = F.scaled_dot_product_attention(q, k, v)  # (B*T, H, S, Dh) bidirectional within a frame
        x = x + gate_s * self.out_s(rearrange(a, "(b t) h s d -> b t s (h d)", b=B))  # (B, T, S, D)

        h = self.norm_t(x) * (1 + scale_t) + shift_t  # (B, T, S, D)
        q, k, v = rearrange(self.qkv_t(h), "b t s (three h d) -> three (b s) h t d", three=3, h=self.heads)
        q, k = rotate_frames(q, positions), rotate_frames(k, positions)  # (B*S, H, T, Dh)
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B*S, H, T, Dh)
        else:
            cache.k[layer, :, :, cache.slot] = k[:, :, 0]  # (B*S, H, Dh)
            cache.v[layer, :, :, cache.slot] = v[:, :, 0]
            n = cache.filled  # rotary keys make slot order irrelevant; every filled slot is in the past
            a = F.scaled_dot_product_attention(q, cache.k[layer, :, :, :n], cache.v[layer, :, :, :n])  # (B*S, H, 1, Dh)
        x = x + gate_t * self.out_t(rearrange(a, "(b s) h t d -> b t s (h d)", b=B))  # (B, T, S, D)

        h = self.norm_m(x) * (1 + scale_m) + shift_m  # (B, T, S, D)
        return x + gate_m * self.mlp(h)  # (B, T, S, D)


class VideoDiffusion(nn.Module):
    """Action-conditioned video DiT over continuous latents; predicts the noise of each frame."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.state_heads = nn.ModuleDict()  # no state readout (the world model's has one per embodiment that records a state)
        cfg = config
        D, p = cfg.d_model, cfg.patch
        self.patch_in = nn.Linear(cfg.latent_channels * p * p, D)
        self.spatial_pos = nn.Parameter(torch.zeros(cfg.num_tokens, D))  # (S, D)
        self.time_proj = Timesteps(D, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(D, D)
        self.stems = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(dim, D), nn.SiLU(), nn.Linear(D, D)) for name, dim in cfg.action_dims.items()
        })
        self.first_frame = nn.Parameter(torch.zeros(D))  # stands in for the action before frame 0
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.patch_out = nn.Linear(D, cfg.latent_channels * p * p)
        self.noise_schedule = DDIMScheduler(
            num_train_timesteps=cfg.train_timesteps, beta_schedule="squaredcos_cap_v2",
            clip_sample=False, prediction_type="epsilon")
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """adaLN-Zero (DiT): every block starts as the identity and the output as zero, which
        keeps the deep residual stack stable at the start of training."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.spatial_pos, std=0.02)
        nn.init.normal_(self.first_frame, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        nn.init.zeros_(self.ada_out[-1].weight)
        nn.init.zeros_(self.ada_out[-1].bias)
        nn.init.zeros_(self.patch_out.weight)

    def add_embodiment(self, spec: EmbodimentSpec) -> None:
        """Add a robot: a new action stem, nothing else changes (as the world model does)."""
        if spec.name in self.stems:
            raise EmbodimentError(f"embodiment {spec.name!r} already exists in this model")
        D = self.config.d_model
        ref = self.first_frame
        self.config.action_dims[spec.name] = spec.chunk_dim
        self.stems[spec.name] = nn.Sequential(nn.Linear(spec.chunk_dim, D), nn.SiLU(), nn.Linear(D, D)).to(ref)

    def _stem(self, embodiment: str) -> nn.Module:
        if embodiment not in self.stems:
            raise EmbodimentError(f"embodiment {embodiment!r} is unknown to this model; expected one of {sorted(self.stems)}")
        return self.stems[embodiment]

    def frame_conditions(self, prev_actions: torch.Tensor, timesteps: torch.Tensor, *, embodiment: str,
                         first: bool) -> torch.Tensor:
        """Per-frame adaLN input: prev_actions (B, T, k*A) are the actions that led into each
        frame (row 0 ignored when ``first``), timesteps (B, T). Returns (B, T, D)."""
        c_act = self._stem(embodiment)(prev_actions)  # (B, T, D)
        if first:
            c_act = torch.cat([self.first_frame.expand_as(c_act[:, :1]), c_act[:, 1:]], dim=1)  # (B, T, D)
        temb = self.time_embed(self.time_proj(timesteps.flatten()).to(c_act.dtype))  # (B*T, D)
        return c_act + temb.view_as(c_act)  # (B, T, D)

    def forward(self, latents: torch.Tensor, conditions: torch.Tensor, positions: torch.Tensor,
                cache: FrameCache | None = None) -> torch.Tensor:
        """Predicted noise (B, T, C, h, w) for latents (B, T, C, h, w) under conditions (B, T, D)."""
        p = self.config.patch
        _, _, _, h, w = latents.shape
        x = rearrange(latents, "b t c (h p1) (w p2) -> b t (h w) (c p1 p2)", p1=p, p2=p)  # (B, T, S, C*p*p)
        x = self.patch_in(x) + self.spatial_pos  # (B, T, S, D)
        for layer, block in enumerate(self.blocks):
            x = block(x, conditions, positions, cache, layer)  # (B, T, S, D)
        shift, scale = self.ada_out(conditions)[:, :, None].chunk(2, dim=-1)  # 2 x (B, T, 1, D)
        x = self.patch_out(self.norm_out(x) * (1 + scale) + shift)  # (B, T, S, C*p*p)
        return rearrange(x, "b t (h w) (c p1 p2) -> b t c (h p1) (w p2)", h=h // p, p1=p, p2=p)

    def loss(self, batch: Mapping, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising loss on the last frame of each window given the clean earlier frames.

        batch: ``frames`` (B, T, C, h, w) continuous latents, ``actions`` (B, T, k*A),
        ``embodiment`` (str). Returns (loss, metrics).
        """
        latents, actions, embodiment = batch["frames"], batch["actions"], batch["embodiment"]
        B, T = latents.shape[:2]
        target = latents[:, -1]  # (B, C, h, w)
        noise = torch.randn(target.shape, generator=generator, device=target.device, dtype=target.dtype)
        tau = torch.randint(0, self.config.train_timesteps, (B,), generator=generator, device=target.device)  # (B,)
        noisy = self.noise_schedule.add_noise(target, noise, tau)  # (B, C, h, w)
        inputs = torch.cat([latents[:, :-1], noisy[:, None]], dim=1)  # (B, T, C, h, w)
        timesteps = torch.zeros(B, T, dtype=torch.long, device=target.device)  # (B, T) past frames are clean
        timesteps[:, -1] = tau
        prev_actions = torch.cat([actions[:, :1], actions[:, :-1]], dim=1)  # (B, T, k*A) action into each frame
        cond = self.frame_conditions(prev_actions, timesteps, embodiment=embodiment, first=True)  # (B, T, D)
        positions = torch.arange(T, device=target.device)  # (T,)
        pred = self(inputs, cond, positions)[:, -1]  # (B, C, h, w)
        loss = F.mse_loss(pred.float(), noise.float())
        return loss, {"loss": loss.item()}
