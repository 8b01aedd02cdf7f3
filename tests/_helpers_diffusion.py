"""A tiny video diffusion baseline and a batch for it, for the baseline's and its sampler's tests."""

import torch

from hma.baselines.diffusion import DiffusionConfig, VideoDiffusion

TINY = DiffusionConfig(latent_channels=4, grid=(8, 8), num_frames=4, action_dims={"arm": 3},
                       d_model=64, depth=2, heads=4, patch=2)


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.randn(2, 4, 4, 8, 8, generator=g), "actions": torch.randn(2, 4, 3, generator=g),
            "embodiment": "arm"}


def perturbed_model() -> VideoDiffusion:
    """adaLN-Zero starts as the identity; perturb it so every path of the network matters."""
    torch.manual_seed(0)
    model = VideoDiffusion(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model
