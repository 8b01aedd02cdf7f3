"""Metrics against known values and properties (hma.eval.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hma.errors import ConfigError, DataError
from hma.eval import metrics as M


def _smooth_images(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Float (B, H, W, 3) in [0, 1] with structure at several scales (random noise blurred)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h // 4, w // 4, generator=g)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = 0.8 * x + 0.2 * torch.rand(b, 3, h, w, generator=g)
    return x.permute(0, 2, 3, 1).contiguous()


# -- PSNR -------------------------------------------------------------------------------

def test_identical_frames_give_infinite_psnr_and_unit_ssim() -> None:
    video = (torch.rand(2, 3, 24, 24, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    assert M.psnr(video, video.clone()).shape == (2, 3)
    assert torch.isinf(M.psnr(video, video.clone())).all()
    assert torch.allclose(M.ssim(video, video.clone()), torch.ones(2, 3))
    images = video[:, 0].numpy()  # numpy uint8 images work the same way, read-only ones too (memmaps)
    images.flags.writeable = False
    assert np.isinf(M.psnr(images, images.copy()).numpy()).all()
    assert torch.allclose(M.ssim(images, images.copy()), torch.ones(2))


@pytest.mark.parametrize("sigma", [2.0, 8.0, 25.0])
def test_psnr_of_known_gaussian_noise(sigma: float) -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(4, 64, 64, 3, generator=g, dtype=torch.float64) * 255  # floats on [0, 255]
    noisy = target + sigma * torch.randn(target.shape, generator=g, dtype=torch.float64)  # no clipping
    got = M.psnr(noisy, target, data_range=255.0)
    assert got.shape == (4,)
    assert abs(float(got.mean()) - 20 * math.log10(255 / sigma)) < 0.1


def test_psnr_uint8_and_unit_floats_agree() -> None:
    g = torch.Generator().manual_seed(2)
    a = (torch.rand(3, 16, 16, 3, generator=g) * 255).to(torch.uint8)
    b = (torch.rand(3, 16, 16, 3, generator=g) * 255).to(torch.uint8)
    assert torch.allclose(M.psnr(a, b), M.psnr(a.float() / 255, b.float() / 255), atol=1e-4)


def test_psnr_rejects_mismatched_inputs() -> None:
    a = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(DataError, match="shape"):
        M.psnr(a, torch.zeros(2, 8, 9, 3, dtype=torch.uint8))
    with pytest.raises(DataError, match="pixel ranges"):
        M.psnr(a, torch.zeros(2, 8, 8, 3))


# -- SSIM -------------------------------------------------------------------------------

def test_ssim_decreases_with_noise_and_drops_for_a_shift() -> None:
    x = _smooth_images(2, 48, 48, seed=3)
    g = torch.Generator().manual_seed(4)
    scores = [float(M.ssim(x + s * torch.randn(x.shape, generator=g), x).mean()) for s in (0.02, 0.08, 0.3)]
    assert scores[0] < 1 and scores[0] > scores[1] > scores[2]
    shifted = torch.roll(x, shifts=2, dims=2)
    assert float(M.ssim(shifted, x).max()) < 0.99


def test_ssim_of_flat_frames_is_the_luminance_term() -> None:
    # Constant frames have zero variance, so SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.6
    c1 = (M.SSIM_K1) ** 2
    got = M.ssim(torch.full((1, 16, 16, 3), a), torch.full((1, 16, 16, 3), b))
    assert abs(float(got) - (2 * a * b + c1) / (a**2 + b**2 + c1)) < 1e-5


def test_ssim_rejects_frames_smaller_than_its_window() -> None:
    with pytest.raises(DataError, match="11x11"):
        M.ssim(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3))


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM the way scikit-image computes it: full-frame Gaussian filtering
    (scipy.ndimage, truncate 3.5 gives the 11-tap window), then the border cropped."""
    from scipy.ndimage import gaussian_filter

    x, y = x.astype(np.float64) / 255, y.astype(np.float64) / 255
    c1, c2, pad = 0.01**2, 0.03**2, 5
    per_channel = []
    for c in range(3):
        a, b = x[..., c], y[..., c]
        f = lambda z: gaussian_filter(z, sigma=1.5, truncate=3.5)  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        per_channel.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(per_channel))


def test_ssim_matches_an_independent_reference() -> None:
    x = (_smooth_images(2, 40, 36, seed=11) * 255).to(torch.uint8).numpy()
    y = np.clip(x.astype(np.int16) + np.random.default_rng(12).integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
    got = M.ssim(x, y)
    for i in range(2):
        assert abs(float(got[i]) - _reference_ssim(x[i], y[i])) < 1e-5


def test_ssim_matches_scikit_image() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x = (_smooth_images(1, 40, 40, seed=5)[0] * 255).to(torch.uint8).numpy()
    y = np.clip(x.astype(np.int16) + np.random.default_rng(6).integers(-30, 30, x.shape), 0, 255).astype(np.uint8)
    ref = skm.structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    assert abs(float(M.ssim(x[None], y[None])) - ref) < 1e-4


# -- delta-PSNR -------------------------------------------------------------------------

def _rollout(model, first: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Frames (B, T, H, W, 3) from a first frame (B, H, W, 3) and integer actions (B, T, 2)."""
    frames = [first]
    for t in range(actions.shape[1] - 1):
        frames.append(model(frames[-1], actions[:, t]))
    return torch.stack(frames, dim=1)


def _shift_by_action(frame: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.roll(f, shifts=(int(a[0]), int(a[1])), dims=(0, 1)) for f, a in zip(frame, action)])


def _shift_ignoring_action(frame: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return torch.roll(frame, shifts=(1, 1), dims=(1, 2))


def test_delta_psnr_is_zero_for_a_model_that_ignores_actions_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(7)
    first = _smooth_images(3, 32, 32, seed=8)
    dataset_actions = torch.randint(-3, 4, (500, 2), generator=g).float()
    true_actions = M.sample_random_actions(dataset_actions, (3, 6), g)  # (B, T, 2)
    # The "real" video follows the true actions, plus sensor noise so PSNRs stay finite.
    target = _rollout(_shift_by_action, first, true_actions) + 0.02 * torch.randn(3, 6, 32, 32, 3, generator=g)
    draws = [M.sample_random_actions(dataset_actions, (3, 6), g) for _ in range(3)]

    for model, expect_positive in ((_shift_by_action, True), (_shift_ignoring_action, False)):
        pred_true = _rollout(model, first, true_actions)
        pred_random = [_rollout(model, first, a) for a in draws]
        delta = M.delta_psnr(pred_true, pred_random, target)
        assert delta.shape == (3, 6)
        if expect_positive:
            assert float(delta[:, 1:].mean()) > 5.0  # frame 0 is the given context in both
        else:
            assert torch.allclose(delta, torch.zeros_like(delta), atol=1e-4)


def test_delta_psnr_needs_three_random_draws() -> None:
    x = torch.zeros(1, 16, 16, 3)
    with pytest.raises(ConfigError, match="at least 3"):
        M.delta_psnr(x, [x, x], x)


# -- perplexity, action error, fps ------------------------------------------------------

def test_perplexity_of_uniform_logits_is_the_vocabulary_size() -> None:
    v = 37
    targets = torch.randint(v, (4, 5, 6), generator=torch.Generator().manual_seed(9))
    assert abs(M.perplexity(torch.zeros(4, 5, 6, v), targets) - v) < 1e-3
    assert abs(M.perplexity(math.log(v)) - v) < 1e-9
    assert M.perplexity(torch.tensor(math.log(v))) == pytest.approx(v, rel=1e-6)  # float32 input


def test_perplexity_counts_only_masked_tokens() -> None:
    v = 10
    targets = torch.zeros(2, 8, dtype=torch.long)
    logits = torch.zeros(2, 8, v)
    logits[:, :4, 0] = 50.0  # confident and right on the first four tokens only
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    assert M.perplexity(logits, targets, mask=mask) == pytest.approx(1.0, abs=1e-6)
    assert M.perplexity(logits, targets, mask=~mask) == pytest.approx(v, rel=1e-5)
    with pytest.raises(DataError, match="selects none"):
        M.perplexity(logits, targets, mask=torch.zeros_like(mask))


def test_action_error_known_values() -> None:
    pred = np.zeros((2, 3, 4), dtype=np.float32)
    true = np.ones((2, 3, 4), dtype=np.float32)
    true[1] = -2.0
    assert torch.allclose(M.action_error(pred, true), torch.tensor([1.0, 4.0]))
    assert torch.allclose(M.action_error(torch.from_numpy(pred), torch.from_numpy(true), kind="mae"), torch.tensor([1.0, 2.0]))
    with pytest.raises(ConfigError, match="'rmse'"):
        M.action_error(pred, true, kind="rmse")  # type: ignore[arg-type]


def test_fps() -> None:
    assert M.fps(30, 2.0) == 15.0
    with pytest.raises(DataError, match="positive duration"):
        M.fps(30, 0.0)


# -- random actions ---------------------------------------------------------------------

def test_random_actions_resample_dataset_rows_reproducibly() -> None:
    actions = np.arange(40, dtype=np.float32).reshape(20, 2)
    a = M.sample_random_actions(actions, (4, 5), torch.Generator().manual_seed(0))
    b = M.sample_random_actions(actions, (4, 5), torch.Generator().manual_seed(0))
    assert a.shape == (4, 5, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    rows = {tuple(r) for r in actions.tolist()}
    assert all(tuple(r) in rows for r in a.reshape(-1, 2).tolist())  # whole dataset rows, never mixed


def test_random_actions_from_stats_are_clipped_gaussians() -> None:
    stats = {"mean": np.array([0.0, 5.0]), "std": np.array([1.0, 0.1]), "min": np.array([-1.0, 4.0]), "max": np.array([1.0, 6.0])}
    a = M.sample_random_actions(stats, 4000, torch.Generator().manual_seed(1))
    assert a.shape == (4000, 2)
    assert float(a[:, 0].min()) >= -1.0 and float(a[:, 0].max()) <= 1.0
    assert float((a[:, 0].abs() == 1.0).float().mean()) > 0.2  # ~32% of N(0,1) lies beyond +-1
    assert abs(float(a[:, 1].mean()) - 5.0) < 0.01 and abs(float(a[:, 1].std()) - 0.1) < 0.01
    with pytest.raises(DataError, match="lack max"):
        M.sample_random_actions({k: stats[k] for k in ("mean", "std", "min")}, 3, torch.Generator())


# -- Frechet distance -------------------------------------------------------------------

def test_frechet_distance_of_a_shifted_feature_set_is_the_squared_shift() -> None:
    rng = np.random.default_rng(10)
    feats = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert abs(M.frechet_distance(feats, feats)) < 1e-6
    assert M.frechet_distance(feats, feats + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Same mean, covariance scaled by 4: distance = tr(S) + tr(4S) - 2 tr(2S) = tr(S).
    centred = feats - feats.mean(axis=0)
    assert M.frechet_distance(centred, 2 * centred) == pytest.approx(float(np.trace(np.cov(centred, rowvar=False))), rel=1e-6)
    with pytest.raises(DataError, match="N >= 2"):
        M.frechet_distance(feats[:1], feats)


@pytest.mark.parametrize("n", [200, 10])  # 10 < D: few samples, singular covariances
def test_frechet_distance_equals_the_scipy_sqrtm_formula(n: int) -> None:
    from scipy import linalg

    rng = np.random.default_rng(n)
    d = 32
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n + 3, d)) * 2 + 1
    mu_a, cov_a = M.feature_statistics(a)
    mu_b, cov_b = M.feature_statistics(b)
    expected = float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(cov_a) + np.trace(cov_b)
                     - 2 * np.real(np.trace(linalg.sqrtm(cov_a @ cov_b))))
    assert M.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
