"""Evaluation metrics as pure functions (the HMA paper's evaluation, arXiv 2502.04296, sec. 5).

Pixel convention: frames are channels-last, images (B, H, W, 3) or videos (B, T, H, W, 3),
given as torch tensors or numpy arrays, either uint8 in [0, 255] or floats in [0, 1]. Pass
``data_range`` to override the float range (e.g. 255 for floats holding [0, 255] values).
Per-frame metrics return a float tensor shaped like the leading dims: (B,) for images,
(B, T) for videos; report ``.mean()``. They run on the inputs' device.

LPIPS, FID and FVD need the standard pretrained networks of :mod:`hma.eval.nets`; load them
there and report ``str(Unavailable)`` when the weight files are not present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from scipy import linalg

from hma.errors import ConfigError, DataError
from hma.eval.nets import LPIPS, FIDInceptionV3, I3DLayer, InceptionI3D
from hma.eval.nets._common import as_float_pixels, to_tensor

ArrayLike = torch.Tensor | np.ndarray

# Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
MIN_RANDOM_DRAWS = 3
PSNR_CAP_DB = 100.0  # a frame reproduced exactly counts as 100 dB instead of +inf (keeps means finite)
MOTION_THRESHOLD = 8.0  # of 255: a pixel "moved" between two futures (see motion_mask)
_FRAMES_PER_CHUNK = 32  # bounds SSIM/LPIPS memory on long videos


def _paired_frames(pred: ArrayLike, target: ArrayLike, data_range: float | None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Both inputs as float frames (N, H, W, 3) scaled to [0, 1], plus the leading shape."""
    p, p_range = as_float_pixels(pred, data_range=data_range)
    t, t_range = as_float_pixels(target, data_range=data_range)
    if p.shape != t.shape:
        raise DataError(f"prediction has shape {tuple(p.shape)} but target has {tuple(t.shape)}; expected equal shapes")
    if p.ndim not in (4, 5) or p.shape[-1] != 3:
        raise DataError(f"expected images (B, H, W, 3) or videos (B, T, H, W, 3), got shape {tuple(p.shape)}")
    if p_range != t_range:
        raise DataError(f"prediction and target use different pixel ranges ({p_range:g} and {t_range:g}); pass both as uint8 or both as floats")
    lead = tuple(p.shape[:-3])
    dtype = torch.promote_types(p.dtype, t.dtype)
    p = p.reshape(-1, *p.shape[-3:]).to(dtype) / p_range  # (N, H, W, 3)
    t = t.reshape(-1, *t.shape[-3:]).to(device=p.device, dtype=dtype) / t_range  # (N, H, W, 3)
    return p, t, lead


def psnr(pred: ArrayLike, target: ArrayLike, *, data_range: float | None = None,
         cap_db: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per frame; ``inf`` where a frame is reproduced exactly,
    or ``cap_db`` (:data:`PSNR_CAP_DB` keeps means finite)."""
    p, t, lead = _paired_frames(pred, target, data_range)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))  # (N,) on the [0, 1] scale, so the peak is 1
    out = (-10 * torch.log10(mse)).reshape(lead)  # log10(0) = -inf gives +inf for identical frames
    return out if cap_db is None else out.clamp(max=cap_db)


def _gaussian_kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-x.pow(2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()  # (11,)


def _ssim_frames(p_nchw: torch.Tensor, t_nchw: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """SSIM of [0, 1] frames (n, 3, H, W) -> (n,), mean over the valid window positions and channels."""
    c = p_nchw.shape[1]
    maps = torch.cat([p_nchw, t_nchw, p_nchw * p_nchw, t_nchw * t_nchw, p_nchw * t_nchw], dim=1)  # (n, 5*3, H, W)
    # Separable Gaussian filter, 'valid' like Wang et al.'s filter2(..., 'valid').
    k = 5 * c
    maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)  # (n, 15, H-10, W)
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)  # (n, 15, H-10, W-10)
    mu_p, mu_t, e_pp, e_tt, e_pt = maps.split(c, dim=1)  # each (n, 3, h, w)
    var_p, var_t, cov = e_pp - mu_p.pow(2), e_tt - mu_t.pow(2), e_pt - mu_p * mu_t
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range is 1 after scaling
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p.pow(2) + mu_t.pow(2) + c1) * (var_p + var_t + c2))
    return ssim_map.mean(dim=(1, 2, 3))  # (n,)


def ssim(pred: ArrayLike, target: ArrayLike, *, data_range: float | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per frame, averaged over the RGB channels.

    Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances, mean
    over window positions fully inside the frame: the same as scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    channel_axis=-1)``.
    """
    p, t, lead = _paired_frames(pred, target, data_range)
    if min(p.shape[1:3]) < SSIM_WINDOW:
        raise DataError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {p.shape[1]}x{p.shape[2]}")
    g = _gaussian_kernel(p.dtype, p.device)
    out = [
        _ssim_frames(rearrange(pc, "n h w c -> n c h w"), rearrange(tc, "n h w c -> n c h w"), g)
        for pc, tc in zip(p.split(_FRAMES_PER_CHUNK), t.split(_FRAMES_PER_CHUNK))
    ]
    return torch.cat(out).reshape(lead)


def motion_mask(future_a: ArrayLike, future_b: ArrayLike, *, threshold: float = MOTION_THRESHOLD) -> torch.Tensor:
    """Pixels where two futures of the same start differ: bool (..., H, W).

    A pixel counts when any channel differs by more than ``threshold`` (of 255, or of the
    float range): what the actions changed, so a static background cannot dominate a score.
    """
    a, b, lead = _paired_frames(future_a, future_b, None)
    moved = (a - b).abs().amax(dim=-1) > threshold / 255.0  # (N, H, W)
    return moved.reshape(*lead, *moved.shape[1:])


def masked_psnr(pred: ArrayLike, target: ArrayLike, mask: ArrayLike, *, cap_db: float | None = None) -> torch.Tensor:
    """PSNR in dB over the pixels of ``mask`` (..., H, W), pooled over all frames of each leading index.

    ``pred``/``target`` are videos (B, T, H, W, 3) with mask (B, T, H, W): one value per clip
    (B,). NaN where a clip's mask is empty.
    """
    p, t, lead = _paired_frames(pred, target, None)
    m = to_tensor(mask).to(device=p.device, dtype=p.dtype).reshape(*p.shape[:-1])  # (N, H, W)
    err = ((p - t).pow(2).mean(dim=-1) * m).reshape(lead[0], -1).sum(dim=1)  # (B,)
    count = m.reshape(lead[0], -1).sum(dim=1)  # (B,)
    mse = err / count  # NaN for an empty mask
    out = -10 * torch.log10(mse)
    return out if cap_db is None else out.clamp(max=cap_db)


def bootstrap_interval(values: ArrayLike, *, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (N,) (NaNs dropped).

    Resamples the N values with replacement ``resamples`` times; the interval holds the
    central ``confidence`` share of the resampled means. One value gives a zero-width interval.
    """
    v = np.asarray(to_tensor(values).double().cpu(), dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise DataError("bootstrap_interval got no finite values; expected at least one")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence {confidence} is invalid; expected a value between 0 and 1")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(v.size, size=(resamples, v.size))].mean(axis=1)  # (R,)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def delta_psnr(
    pred_true: ArrayLike, pred_random: Sequence[ArrayLike], target: ArrayLike, *, data_range: float | None = None,
    cap_db: float | None = None,
) -> torch.Tensor:
    """Controllability: PSNR with the true actions minus the mean PSNR over random-action draws.

    ``pred_random`` holds at least 3 predictions from the same context, each with actions drawn
    by :func:`sample_random_actions`. About 0 for a model that ignores actions; higher means the
    model follows them. Shape as :func:`psnr`.
    """
    if len(pred_random) < MIN_RANDOM_DRAWS:
        raise ConfigError(f"delta-PSNR needs at least {MIN_RANDOM_DRAWS} random-action predictions, got {len(pred_random)}")
    true_psnr = psnr(pred_true, target, data_range=data_range, cap_db=cap_db)
    random_psnr = torch.stack([psnr(r, target, data_range=data_range, cap_db=cap_db).to(true_psnr.device)
                               for r in pred_random])
    return true_psnr - random_psnr.mean(dim=0)


def perplexity(
    logits_or_ce: torch.Tensor | float, targets: torch.Tensor | None = None, *, mask: torch.Tensor | None = None
) -> float:
    """exp(mean cross-entropy in nats) over the predicted tokens.

    Either a mean cross-entropy (a float or 0-d tensor, ``targets`` omitted), or logits
    (..., V) with integer ``targets`` (...); ``mask`` (...) bool selects the tokens that count
    (True = predicted/masked token, as the model's ``token_mask``).
    """
    if targets is None:
        ce = torch.as_tensor(logits_or_ce, dtype=torch.float64)
        if ce.ndim != 0:
            raise DataError(f"perplexity without targets needs a scalar mean cross-entropy, got shape {tuple(ce.shape)}")
        return math.exp(float(ce))
    logits = torch.as_tensor(logits_or_ce)
    if logits.shape[:-1] != targets.shape:
        raise DataError(f"logits of shape {tuple(logits.shape)} do not match targets of shape {tuple(targets.shape)}; expected (..., V) and (...)")
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(), reduction="none")  # (N,)
    if mask is not None:
        if mask.shape != targets.shape:
            raise DataError(f"mask of shape {tuple(mask.shape)} does not match targets of shape {tuple(targets.shape)}")
        ce = ce[mask.reshape(-1).to(torch.bool)]
    if ce.numel() == 0:
        raise DataError("perplexity needs at least one token, but the mask selects none")
    return math.exp(float(ce.mean()))


def action_error(pred: ArrayLike, true: ArrayLike, *, kind: Literal["mse", "mae"] = "mse") -> torch.Tensor:
    """Mean squared (``mse``) or absolute (``mae``) error per sample between action chunks (B, ...) -> (B,)."""
    p, t = to_tensor(pred), to_tensor(true)
    if p.shape != t.shape or p.ndim < 1:
        raise DataError(f"predicted actions have shape {tuple(p.shape)} but true actions have {tuple(t.shape)}; expected equal shapes (B, ...)")
    dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
    diff = p.to(dtype) - t.to(device=p.device, dtype=dtype)  # (B, ...)
    if kind == "mse":
        err = diff.pow(2)
    elif kind == "mae":
        err = diff.abs()
    else:
        raise ConfigError(f"action error kind {kind!r} is unknown; expected 'mse' or 'mae'")
    return err.reshape(err.shape[0], -1).mean(dim=1)  # (B,)


def fps(num_frames: int, seconds: float) -> float:
    """Generated frames per second of wall time."""
    if seconds <= 0 or num_frames < 0:
        raise DataError(f"fps needs a positive duration and a frame count >= 0, got {num_frames} frames in {seconds} s")
    return num_frames / seconds


def machine_load() -> dict[str, float | int | None]:
    """The machine's 1-minute load average (None where the OS keeps none) and CPU count: what a
    measured speed means depends on what else was running."""
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        load = None
    return {"load_average": load, "cpu_count": os.cpu_count()}


def sample_random_actions(
    source: ArrayLike | Mapping[str, ArrayLike], n: int | tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """Draw actions from an embodiment's empirical action distribution -> float32 (*n, A).

    - ``source`` an (N, A) array of the dataset's actions: whole rows are resampled uniformly
      with replacement, so the draws keep the joint distribution (e.g. gripper/arm correlations).
      Prefer this whenever the actions are at hand.
    - ``source`` a stats mapping with ``mean``, ``std``, ``min``, ``max`` (A,) (as
      ``EpisodeStore.action_stats``): each dimension independently Gaussian with that mean and
      std, clipped to [min, max].
    Random numbers come from ``generator``; the result lives on its device.
    """
    shape = (n,) if isinstance(n, int) else tuple(n)
    device = generator.device
    if isinstance(source, Mapping):
        missing = [k for k in ("mean", "std", "min", "max") if k not in source]
        if missing:
            raise DataError(f"action stats lack {', '.join(missing)}; expected mean, std, min and max arrays")
        mean, std, lo, hi = (to_tensor(np.asarray(source[k])).to(device=device, dtype=torch.float32)
                             for k in ("mean", "std", "min", "max"))
        z = torch.randn(*shape, mean.shape[-1], generator=generator, device=device)  # (*n, A)
        return torch.minimum(torch.maximum(mean + std * z, lo), hi)
    actions = to_tensor(source).to(torch.float32)
    if actions.ndim != 2 or actions.shape[0] == 0:
        raise DataError(f"expected a non-empty (N, A) array of dataset actions, got shape {tuple(actions.shape)}")
    rows = torch.randint(actions.shape[0], shape, generator=generator, device=device)  # (*n,)
    return actions.to(device)[rows]  # (*n, A)


@torch.no_grad()
def lpips(pred: ArrayLike, target: ArrayLike, net: LPIPS, *, data_range: float | None = None) -> torch.Tensor:
    """LPIPS (AlexNet, v0.1) per frame; ``net`` from :func:`hma.eval.nets.load_lpips`."""
    p, t, lead = _paired_frames(pred, target, data_range)
    out = [net.distance(pc, tc, data_range=1.0) for pc, tc in zip(p.split(_FRAMES_PER_CHUNK), t.split(_FRAMES_PER_CHUNK))]
    return torch.cat(out).reshape(lead)


def _features_f64(features: ArrayLike) -> np.ndarray:
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise DataError(f"Frechet distance needs features (N, D) with N >= 2, got shape {f.shape}")
    return f


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    f = _features_f64(features)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_product_trace(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr(sqrtm(cov_a @ cov_b)) for covariance (PSD) matrices.

    cov_a @ cov_b has the eigenvalues of the symmetric PSD S cov_b S with S = sqrtm(cov_a), so
    two symmetric eigendecompositions give the trace. It equals scipy.linalg.sqrtm's result
    (tests check it) but is ~8x faster at D = 2048 (20 s vs 160 s on this project's loaded
    2-core machine), needs no singular-matrix regularization and has no imaginary round-off.
    """
    w, v = linalg.eigh(cov_a)
    s = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # (D, D) sqrtm(cov_a)
    eig = linalg.eigvalsh(s @ cov_b @ s)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) (the FID/FVD formula):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrtm(S_a S_b)), S the sample covariances."""
    fa, fb = _features_f64(features_a), _features_f64(features_b)
    if fa.shape[1] != fb.shape[1]:
        raise DataError(f"feature sets have dimensions {fa.shape[1]} and {fb.shape[1]}; expected equal")
    (na, d), nb = fa.shape, fb.shape[0]
    xa, xb = fa - fa.mean(axis=0), fb - fb.mean(axis=0)  # (Na, D), (Nb, D) centred
    diff = fa.mean(axis=0) - fb.mean(axis=0)
    trace_a, trace_b = (xa**2).sum() / (na - 1), (xb**2).sum() / (nb - 1)
    if max(na, nb) <= d:
        # Few samples: S_a S_b = xa^T (xa xb^T) xb / c shares its non-zero eigenvalues with
        # (xa xb^T)(xa xb^T)^T / c, so the trace term is the nuclear norm of the small cross-Gram.
        cross = linalg.svdvals(xa @ xb.T).sum() / np.sqrt((na - 1) * (nb - 1))
    else:
        cross = _sqrtm_product_trace(xa.T @ xa / (na - 1), xb.T @ xb / (nb - 1))
    return float(diff @ diff + trace_a + trace_b - 2 * cross)


def fid(real: ArrayLike, fake: ArrayLike, net: FIDInceptionV3, *, data_range: float | None = None) -> float:
    """FID between two sets of frames, images (B, H, W, 3) or videos (B, T, H, W, 3) taken frame by frame."""
    feats = []
    for frames in (real, fake):
        x, rng = as_float_pixels(frames, data_range=data_range)
        if x.ndim == 5:
            x = rearrange(x, "b t h w c -> (b t) h w c")
        feats.append(net.features(x, data_range=rng))  # (N, 2048)
    return frechet_distance(*feats)


def fvd(
    real: ArrayLike, fake: ArrayLike, net: InceptionI3D, *, layer: I3DLayer = I3DLayer.LOGITS,
    data_range: float | None = None,
) -> float:
    """FVD between two sets of videos (B, T, H, W, 3), T >= 9, on I3D ``layer`` features."""
    return frechet_distance(
        net.features(real, layer=layer, data_range=data_range),
        net.features(fake, layer=layer, data_range=data_range),
    )


class FeatureNets:
    """LPIPS / FID / FVD networks when their weight files are configured, else the reasons they are not."""

    def __init__(self) -> None:
        from hma.eval.nets import Unavailable, load_fid_inception, load_i3d, load_lpips

        self.nets = {"lpips": load_lpips(), "fid": load_fid_inception(), "fvd": load_i3d()}
        self.notes = {k: str(v) for k, v in self.nets.items() if isinstance(v, Unavailable)}

    def scores(self, pred: np.ndarray, target: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
        """pred/target (B, H, h, w, 3) uint8 -> lpips/fid/fvd (None where unavailable) and notes."""
        out: dict[str, float | None] = {"lpips": None, "fid": None, "fvd": None}
        notes = dict(self.notes)
        if "lpips" not in notes:
            out["lpips"] = float(lpips(pred, target, self.nets["lpips"]).mean())
        if "fid" not in notes:
            n = pred.shape[0] * pred.shape[1]
            if n >= 2:
                out["fid"] = fid(target, pred, self.nets["fid"])
            else:
                notes["fid"] = f"FID needs at least 2 frames, got {n}"
        if "fvd" not in notes:
            if pred.shape[1] >= 9 and pred.shape[0] >= 2:
                out["fvd"] = fvd(target, pred, self.nets["fvd"])
            else:
                notes["fvd"] = f"FVD needs at least 2 clips of at least 9 frames, got {pred.shape[0]} of {pred.shape[1]}"
        return out, notes
