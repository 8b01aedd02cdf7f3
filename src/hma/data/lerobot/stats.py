"""Feature statistics in LeRobot v3.0's shape (``meta/stats.json``, ``stats/*`` columns).

Per feature: min, max, mean, std, count and the quantiles q01..q99, each a nested list
shaped like the feature (``(D,)`` vectors, ``(1,)`` scalars, ``(3, 1, 1)`` per-channel
image values in [0, 1]). Images are computed on a frame subsample, as LeRobot does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
# LeRobot's subsample: every frame up to 100, then about length^0.75, at most 10,000.
_MIN_SAMPLES, _MAX_SAMPLES, _SAMPLE_POWER = 100, 10_000, 0.75

Stats = dict[str, np.ndarray]


def sample_indices(length: int) -> np.ndarray:
    """Evenly spaced frame indices of an episode used for image statistics."""
    n = length if length < _MIN_SAMPLES else max(_MIN_SAMPLES, min(int(length**_SAMPLE_POWER), _MAX_SAMPLES))
    return np.round(np.linspace(0, length - 1, n)).astype(np.int64)


def vector_stats(values_nd: np.ndarray) -> Stats:
    """Statistics of (N, D) values over N."""
    x = np.asarray(values_nd, dtype=np.float64)
    quantiles = np.quantile(x, list(QUANTILES.values()), axis=0)  # (Q, D)
    return {
        "min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
        "count": np.array([len(x)], dtype=np.int64),
        **dict(zip(QUANTILES, quantiles)),
    }


def image_stats(frames_thw3: np.ndarray) -> Stats:
    """Per-channel statistics of uint8 frames in [0, 1], shaped (3, 1, 1), on a frame subsample.

    uint8 pixels have 256 values, so per-channel histograms give exact moments and
    quantiles (the lower value where the cumulative share reaches q) without sorting
    millions of pixels.
    """
    sampled = frames_thw3[sample_indices(len(frames_thw3))]
    hist = np.stack([np.bincount(sampled[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)  # (3, 256)
    values = np.arange(256) / 255.0
    share = hist / hist.sum(1, keepdims=True)
    mean = share @ values  # (3,)
    cdf = np.cumsum(share, 1)  # (3, 256)
    seen = hist > 0
    stats = {
        "min": values[seen.argmax(1)],
        "max": values[255 - seen[:, ::-1].argmax(1)],
        "mean": mean,
        "std": np.sqrt(share @ values**2 - mean**2).clip(0),
    }
    for name, q in QUANTILES.items():
        stats[name] = values[(cdf < q - 1e-12).sum(1)]
    stats = {k: v.reshape(3, 1, 1) for k, v in stats.items()}
    stats["count"] = np.array([len(sampled)], dtype=np.int64)
    return stats


def aggregate(per_episode: list[Stats]) -> Stats:
    """Dataset statistics from per-episode ones: exact min/max/mean/std, count-weighted quantiles.

    Exact quantiles would need every value at once; like LeRobot's aggregation, the
    count-weighted mean of episode quantiles is used instead.
    """
    counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
    weights = counts / counts.sum()

    def weighted(key: str) -> np.ndarray:
        return sum(w * s[key] for w, s in zip(weights, per_episode))

    mean = weighted("mean")
    variance = sum(w * (s["std"] ** 2 + (s["mean"] - mean) ** 2) for w, s in zip(weights, per_episode))
    out = {
        "min": np.minimum.reduce([s["min"] for s in per_episode]),
        "max": np.maximum.reduce([s["max"] for s in per_episode]),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())], dtype=np.int64),
    }
    for name in QUANTILES:
        out[name] = weighted(name)
    return out


def to_lists(stats: Stats) -> dict[str, Any]:
    """JSON/Arrow-friendly nested lists."""
    return {k: v.tolist() for k, v in stats.items()}
