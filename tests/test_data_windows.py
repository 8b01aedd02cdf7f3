import numpy as np
import pytest

from hma.data.mixture import MixtureSampler, mixture_weights
from hma.data.windows import ActionNormalizer, WindowDataset, check_window_fits, frame_stride, split_episodes
from hma.errors import ConfigError, DataError

from _helpers_store import make_store


def test_frame_stride():
    assert frame_stride(20, 10) == 2
    assert frame_stride(10, 10) == 1
    with pytest.raises(DataError, match="not an integer multiple"):
        frame_stride(15, 10)
    with pytest.raises(DataError, match="not an integer multiple"):
        frame_stride(5, 10)


def test_split_episodes():
    assert split_episodes(10) == (list(range(9)), [9])
    assert split_episodes(40) == (list(range(36)), [36, 37, 38, 39])
    assert split_episodes(1) == ([0], [])
    assert split_episodes(2) == ([0], [1])


def test_action_chunking_at_twice_the_frame_rate(tmp_path):
    store = make_store(tmp_path / "d", episodes=2, length=20, action_dim=3, control_hz=20.0)
    ds = WindowDataset(store, num_frames=4, frame_hz=10.0)
    assert ds.chunk == 2 and ds.action_dim == 6
    # every control step whose 4-frame (8-step) span fits in its 20-step episode starts a window
    assert len(ds) == 2 * (20 - 8 + 1)
    w = ds[3]
    start = int(ds.starts[3])
    np.testing.assert_array_equal(w["frames"], store.frames[start : start + 8 : 2])
    raw = store.actions[start : start + 8]  # (8, 3) control-rate actions
    z = ds.normalizer.denormalize(w["actions"])  # (4, 6)
    np.testing.assert_allclose(z, raw.reshape(4, 6), atol=1e-5)


def test_windows_never_cross_episodes(tmp_path):
    store = make_store(tmp_path / "d", episodes=3, length=10)
    ds = WindowDataset(store, num_frames=5)
    ends = store.episode_starts[1:]
    for s in ds.starts:
        e = np.searchsorted(ends, s, side="right")
        assert s + 5 <= ends[e]


def test_normalization_uses_stored_statistics(tmp_path):
    store = make_store(tmp_path / "d", episodes=4, length=30, action_dim=2)
    ds = WindowDataset(store, num_frames=30)
    a = ds.get_batch(np.arange(len(ds)))["actions"].reshape(-1, 2)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-3)
    norm = ActionNormalizer.from_stats({"mean": [1.0, 2.0], "std": [0.0, 2.0]}, chunk=2)
    assert norm.mean.shape == (4,)
    assert np.isfinite(norm.normalize(np.ones((1, 4), np.float32))).all()  # zero std is floored


def test_held_out_episodes_and_token_source(tmp_path):
    store = make_store(tmp_path / "d", episodes=4, length=12)
    train, held = split_episodes(store.num_episodes)
    tokens = np.arange(store.num_frames * 4, dtype=np.int32).reshape(-1, 2, 2)
    ds = WindowDataset(store, num_frames=3, episodes=held, source=tokens)
    assert len(ds) == 12 - 3 + 1
    b = ds.get_batch([0, 1])
    assert b["frames"].shape == (2, 3, 2, 2)
    assert b["frames"][0, 0, 0, 0] == store.episode_starts[3] * 4
    with pytest.raises(DataError, match="rows"):
        WindowDataset(store, num_frames=3, source=tokens[:-1])


def test_window_longer_than_every_episode(tmp_path):
    store = make_store(tmp_path / "d", episodes=2, length=6, control_hz=20.0)
    with pytest.raises(DataError, match="needs 8"):
        check_window_fits(store, num_frames=4)
    assert len(WindowDataset(store, num_frames=4)) == 0


def test_mixture_weights_follow_tau():
    w = mixture_weights([100, 10, 1], tau=1.0)
    np.testing.assert_allclose(w, np.array([100, 10, 1]) / 111)
    w3 = mixture_weights([100, 10, 1], tau=3.0)
    expected = np.array([100, 10, 1]) ** (1 / 3)
    np.testing.assert_allclose(w3, expected / expected.sum())
    with pytest.raises(ConfigError, match="tau"):
        mixture_weights([1, 2], tau=0)


def test_mixture_empirical_frequencies_match_weights():
    sizes = [1000, 100, 10]
    sampler = iter(MixtureSampler(sizes, batch_size=2, tau=3.0, seed=1))
    counts = np.zeros(3)
    n = 6000
    for _ in range(n):
        d, idx = next(sampler)
        counts[d] += 1
        assert idx.max() < sizes[d]
    np.testing.assert_allclose(counts / n, mixture_weights(sizes, 3.0), atol=0.02)


def test_mixture_is_deterministic_resumable_and_split_across_ranks():
    def take(s, n):
        it = iter(s)
        return [(d, tuple(i)) for d, i in (next(it) for _ in range(n))]

    full = take(MixtureSampler([50, 20], 4, seed=7), 10)
    assert full == take(MixtureSampler([50, 20], 4, seed=7), 10)
    assert full != take(MixtureSampler([50, 20], 4, seed=8), 10)
    assert take(MixtureSampler([50, 20], 4, seed=7, start_batch=6), 4) == full[6:]
    r0 = take(MixtureSampler([50, 20], 4, seed=7, rank=0, world_size=2), 5)
    r1 = take(MixtureSampler([50, 20], 4, seed=7, rank=1, world_size=2), 5)
    assert r0 == full[0::2] and r1 == full[1::2]
