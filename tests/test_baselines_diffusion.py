"""Video diffusion baseline: it learns, matches a world-model preset, adds embodiments (its sampler: test_sampling_ddim.py)."""

import pytest
import torch

from _helpers_diffusion import TINY, batch as _batch
from hma.baselines.diffusion import DiffusionConfig, VideoDiffusion
from hma.config import preset

pytestmark = pytest.mark.usefixtures("single_thread")


def test_loss_decreases_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = VideoDiffusion(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _batch()
    losses = []
    for i in range(40):
        loss, metrics = model.loss(batch, torch.Generator().manual_seed(i % 4))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss"])
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4


def test_config_matches_a_world_model_preset() -> None:
    cfg = DiffusionConfig.from_model_config(preset("base"))
    assert (cfg.d_model, cfg.depth, cfg.heads, cfg.grid, cfg.num_frames) == (256, 32, 8, (16, 16), 12)


def test_add_embodiment_adds_a_stem_that_the_loss_uses() -> None:
    from hma.config import EmbodimentSpec

    model = VideoDiffusion(DiffusionConfig(**{**TINY.to_json(), "grid": TINY.grid, "action_dims": {"arm": 3}}))
    model.add_embodiment(EmbodimentSpec(name="gripper", action_dim=2, chunk=2, mean=[0.0] * 4, std=[1.0] * 4))
    batch = {**_batch(), "actions": torch.randn(2, 4, 4), "embodiment": "gripper"}
    loss, _ = model.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert model.stems["gripper"][0].weight.grad is not None
