"""The diffusion baseline's DDIM sampler: shapes, seeds, an exact cached pass, bounded memory."""

import pytest
import torch

from _helpers_diffusion import TINY, perturbed_model
from _helpers_diffusion import batch as batch_
from hma.sampling.ddim import DDIMEngine

pytestmark = pytest.mark.usefixtures("single_thread")


def test_ddim_rollout_shapes_and_same_seed_same_video() -> None:
    model = perturbed_model()
    batch = batch_()

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
    model = perturbed_model()
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
    model = perturbed_model()
    batch = batch_()
    r = DDIMEngine(model, embodiment="arm", steps=1)
    r.reset(batch["frames"][:, :1], batch["actions"][:, :0])
    sizes = set()
    for _ in range(3 * TINY.num_frames):
        r.step(batch["actions"][:, 0])
        sizes.add(r.cache.nbytes())
    assert len(sizes) == 1
