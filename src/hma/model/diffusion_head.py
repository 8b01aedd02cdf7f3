"""MAR's per-token diffusion head (paper sec. 3.3, continuous tokens).

A small adaLN MLP denoises one latent token at a time, conditioned on the trunk output
``z`` for that token. Two verbs, as in MAR: ``forward(target, z, mask) -> loss`` for
training and ``sample(z, temperature, generator, steps)`` for generation. The noise
schedule is diffusers' cosine DDPM schedule (1000 training steps); sampling respaces it
with DDIM.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import Tensor, nn


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale, gate = self.adaln(c).chunk(3, dim=-1)  # 3 x (N,W)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """Epsilon-predicting adaLN MLP over single tokens: (x_t (N,C), t (N,), z (N,D)) -> eps (N,C)."""

    def __init__(self, channels: int, cond_width: int, *, width: int = 256, num_blocks: int = 3,
                 train_steps: int = 1000) -> None:
        super().__init__()
        self.channels = channels
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.cond_embed = nn.Linear(cond_width, width)
        self.input = nn.Linear(channels, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.output = nn.Linear(width, channels)
        self.scheduler = DDPMScheduler(num_train_timesteps=train_steps, beta_schedule="squaredcos_cap_v2")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # adaLN-Zero (DiT): every residual gate and the output start at zero, so the head
        # begins as "predict zero noise" and training is stable from step one.
        for block in self.blocks:
            nn.init.zeros_(block.adaln[-1].weight)
            nn.init.zeros_(block.adaln[-1].bias)
        nn.init.zeros_(self.final_adaln[-1].weight)
        nn.init.zeros_(self.final_adaln[-1].bias)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def predict_noise(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        c = self.time_embed(self.time_proj(t).to(z.dtype)) + self.cond_embed(z)  # (N,W)
        h = self.input(x_t)  # (N,W)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_adaln(c).chunk(2, dim=-1)
        return self.output(self.final_norm(h) * (1 + scale) + shift)  # (N,C)

    def forward(self, target: Tensor, z: Tensor, mask: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
        """Denoising loss: target (N,C) clean latents, z (N,D) conditions, mask (N,) 1 = counts."""
        n = target.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), device=target.device, generator=generator)
        noise = torch.randn(target.shape, device=target.device, dtype=target.dtype, generator=generator)  # (N,C)
        x_t = self.scheduler.add_noise(target, noise, t)  # (N,C)
        per_token = (self.predict_noise(x_t, t, z) - noise).pow(2).mean(dim=-1)  # (N,)
        if mask is None:
            return per_token.mean()
        mask = mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)

    @torch.no_grad()
    def sample(self, z: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               steps: int = 100) -> Tensor:
        """Draw one latent per condition: z (N,D) -> (N,C).

        DDIM (eta = 0) over ``steps`` respaced timesteps; ``temperature`` scales the
        starting noise, the only randomness of a deterministic DDIM trajectory.
        """
        ddim = DDIMScheduler.from_config(self.scheduler.config)
        ddim.set_timesteps(steps, device=z.device)
        x = temperature * torch.randn((z.shape[0], self.channels), device=z.device, dtype=z.dtype, generator=generator)
        for t in ddim.timesteps:
            eps = self.predict_noise(x, t.expand(z.shape[0]).to(z.device), z)  # (N,C)
            x = ddim.step(eps, t, x).prev_sample
        return x
