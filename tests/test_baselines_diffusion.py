"""Video diffusion baseline: it learns, samples the right shapes, and its cache is exact and bounded."""

import pytest
import torch

from hma.baselines.diffusion import DiffusionConfig, VideoDiffusion
from hma.sampling.ddim import DDIMEngine
from hma.config import preset

TINY = DiffusionConfig(latent_channels=4, grid=(8, 8), num_frames=4, action_dims={"arm": 3},
                       d_model=64, depth=2, heads=4, patch=2)


pytestmark = pytest.mark.usefixtures("single_thread")


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.randn(2, 4, 4, 8, 8, generator=g), "actions": torch.randn(2, 4, 3, generator=g),
            "embodiment": "arm"}


def _perturbed_model() -> VideoDiffusion:
    """adaLN-Zero starts as the identity; perturb it so every path of the network matters."""
    torch.manual_seed(0)
    model = VideoDiffusion(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


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


def test_ddim_rollout_shapes_and_same_seed_same_video() -> None:
    model = _perturbed_model()
    batch = _batch()

    def rollout(seed: int) -> torch.Tensor:
        r = DDIMEngine(model, embodiment="arm", steps=4)
        r.reset(batch["frames"][:, :2], batch["actions"][:, :1])  # the action between the two context frames
        g = torch.Generator().manual_seed(seed)
        return torch.stack([r.step(batch["actions"][:, 1 + i], g) for i in range(3)], dim=1)

    a, b, c = rollout(1), rollout(1), rollout(2)
    assert a.shape == (2, 3, 4, 8, 8)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cached_single_frame_pass_equals_the_window_pass() -> None:
    # Frames start at absolute index 5: rotary positions make only frame differences matter.
    model = _perturbed_model()
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 3, 4, 8, 8, generator=g)
    actions = torch.randn(2, 3, 3, generator=g)  # taken at each frame; the last leads to the new one
    r = DDIMEngine(model, embodiment="arm", window=4)
    r.reset(frames, actions[:, :2])
    noisy = torch.randn(2, 4, 8, 8, generator=g)
    with torch.inference_mode():
        cached = r._pass(noisy, actions[:, 2], 300, first=False)  # (B, C, h, w)
        window = torch.cat([frames, noisy[:, None]], dim=1)  # (B, 4, C, h, w)
        tau = torch.tensor([[0, 0, 0, 300]]).expand(2, 4)
        prev = torch.cat([actions[:, :1], actions], dim=1)  # action into each window frame
        cond = model.frame_conditions(prev, tau, embodiment="arm", first=True)
        full = model(window, cond, torch.arange(5, 9))[:, -1]
    assert torch.allclose(cached, full, atol=1e-5)


def test_cache_memory_is_constant_over_a_long_rollout() -> None:
    model = _perturbed_model()
    batch = _batch()
    r = DDIMEngine(model, embodiment="arm", steps=1)
    r.reset(batch["frames"][:, :1], batch["actions"][:, :0])
    sizes = set()
    for _ in range(3 * TINY.num_frames):
        r.step(batch["actions"][:, 0])
        sizes.add(r.cache.nbytes())
    assert len(sizes) == 1


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
