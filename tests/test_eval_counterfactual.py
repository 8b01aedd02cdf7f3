"""Evaluation against counterfactual branches: the metrics, the clip pairs, the runner's section."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from _helpers_eval import add_branches, make_run

from hma.cli import main
from hma.data.sim.branches import BRANCHES_DIR, Branch, BranchPolicy, open_branches
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.eval import gifs
from hma.eval import metrics as M
from hma.eval import runner
from hma.eval.counterfactual import counterfactual_clips, counterfactual_scores, follows_other_actions
from hma.eval.report import COUNTERFACTUAL_GIF_SUFFIX, DELTA_BRANCHES, DELTA_RANDOM


def _square_videos(rng: np.random.Generator, b: int, h: int, *, size: int = 16) -> np.ndarray:
    """(b, h, size, size, 3) uint8: a grey background with a white square at a random place per frame."""
    v = np.full((b, h, size, size, 3), 60, dtype=np.uint8)
    for i in range(b):
        for t in range(h):
            y, x = rng.integers(0, size - 4, 2)
            v[i, t, y : y + 4, x : x + 4] = 255
    return v


@pytest.fixture
def futures():
    rng = np.random.default_rng(0)
    future, cf_future = _square_videos(rng, 24, 5), _square_videos(rng, 24, 5)
    # A lossy "tokenizer": the round trip blurs the frames a little.
    noise = lambda v: np.clip(v.astype(np.int16) + rng.integers(-12, 13, v.shape), 0, 255).astype(np.uint8)  # noqa: E731
    return future, cf_future, noise(future), noise(cf_future)


def test_a_model_that_returns_the_true_futures_scores_the_ceiling(futures):
    future, cf_future, recon, recon_cf = futures
    s = counterfactual_scores(recon, recon_cf, future, cf_future, recon, recon_cf, policies=["random"] * 24)
    assert s["ceiling"]["mean"] > 3.0
    assert s["delta_psnr"]["mean"] == pytest.approx(s["ceiling"]["mean"])
    assert s["fraction_of_ceiling"] == pytest.approx(1.0)
    assert s["delta_psnr"]["lo"] > 0
    assert follows_other_actions(s)
    assert s["motion_psnr_true"]["mean"] == pytest.approx(s["tokenizer_motion_psnr"]["mean"])


def test_an_action_blind_model_scores_zero_and_does_not_follow_the_other_actions(futures):
    future, cf_future, recon, recon_cf = futures
    s = counterfactual_scores(recon, recon, future, cf_future, recon, recon_cf, policies=["random"] * 24)
    assert s["delta_psnr"]["mean"] == 0.0 and s["delta_psnr"]["lo"] == 0.0 == s["delta_psnr"]["hi"]
    assert s["fraction_of_ceiling"] == 0.0
    assert not follows_other_actions(s)
    assert all(h["mean"] == 0.0 for h in s["delta_psnr"]["by_horizon"])


def test_a_nearly_action_blind_model_does_not_pass_on_noise(futures):
    future, cf_future, recon, recon_cf = futures
    rng = np.random.default_rng(3)
    jitter = np.clip(recon.astype(np.int16) + rng.integers(-1, 2, recon.shape), 0, 255).astype(np.uint8)
    s = counterfactual_scores(recon, jitter, future, cf_future, recon, recon_cf, policies=["random"] * 24)
    assert abs(s["counterfactual_gain"]["mean"]) < 0.05
    assert not follows_other_actions(s)


def test_the_interval_shrinks_with_more_clips():
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 100, 1000):
        lo, hi = M.bootstrap_interval(rng.normal(1.0, 2.0, n), seed=0)
        widths.append(hi - lo)
    # About sqrt(10) narrower per tenfold more clips.
    assert widths[0] > 2 * widths[1] and widths[1] > 2 * widths[2]
    lo, hi = M.bootstrap_interval(rng.normal(1.0, 2.0, 4000))
    assert lo < 1.0 < hi and hi - lo < 0.2


def test_motion_psnr_sees_a_vanished_robot_that_whole_frame_psnr_hides():
    rng = np.random.default_rng(2)
    future, cf_future = _square_videos(rng, 4, 3, size=64), _square_videos(rng, 4, 3, size=64)
    vanished = np.full_like(future, 60)  # the background alone: the square (the robot) is gone
    moved = M.motion_mask(future, cf_future)
    assert moved.shape == future.shape[:-1] and moved.any()
    assert float(M.psnr(vanished, future).mean()) > 17.0  # the frame-level score looks fine
    assert float(M.masked_psnr(vanished, future, moved).mean()) < 7.0  # the moving pixels are all wrong
    assert np.isinf(M.masked_psnr(future, future, moved)).all()
    assert np.isnan(M.masked_psnr(future, future, np.zeros_like(moved))).all()


def _parent_and_branches(tmp_path, *, episodes: int = 3, length: int = 20, chunk: int = 2):
    """A parent store whose frames and actions encode their own row, and branches that encode theirs + 1000."""
    info = DatasetInfo(embodiment="arm", simulator="synthetic", action_names=["a"], control_hz=10.0 * chunk,
                       image_size=(4, 4))
    with StoreWriter(tmp_path / "parent", info) as w:
        for e in range(episodes):
            rows = np.arange(length) + 100 * e
            w.add_episode(np.broadcast_to((rows % 256).astype(np.uint8)[:, None, None, None], (length, 4, 4, 3)).copy(),
                          rows[:, None].astype(np.float32))
    branches = [Branch(episodes - 1, step, BranchPolicy.RANDOM, 0) for step in (2, 6, 12)]
    binfo = DatasetInfo(**{**info.__dict__, "extra": {"branches": [
        {"episode": b.episode, "step": b.step, "policy": b.policy.value, "draw": b.draw} for b in branches]}})
    with StoreWriter(tmp_path / "parent" / BRANCHES_DIR, binfo) as w:
        for i, b in enumerate(branches):
            rows = np.arange(length - b.step) + 1000 + 100 * i
            w.add_episode(np.broadcast_to((rows % 256).astype(np.uint8)[:, None, None, None],
                                          (len(rows), 4, 4, 3)).copy(), rows[:, None].astype(np.float32))
    return EpisodeStore(tmp_path / "parent"), *open_branches(tmp_path / "parent")


def test_clip_pairs_share_the_context_and_split_at_the_branch_point(tmp_path):
    parent, bstore, branches = _parent_and_branches(tmp_path)
    clips = counterfactual_clips(parent, bstore, branches, held=[2], chunk=2, context=2, horizon=3,
                                 mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    # Step 12 needs rows up to 12 + (3 + 1) * 2 - 1 = 19 < 20: fits; every step >= 2 has its context.
    assert clips.parents == [(2, 2), (2, 6), (2, 12)]
    first = clips.frames[0, :, 0, 0, 0].astype(int)  # parent rows 200 + (0, 2, 4, 6, 8) -> uint8
    np.testing.assert_array_equal(first, (200 + np.array([0, 2, 4, 6, 8])) % 256)
    np.testing.assert_array_equal(clips.cf_future[0, :, 0, 0, 0].astype(int), (1000 + np.array([2, 4, 6])) % 256)
    # Action chunks: frame t carries rows [start + 2t, start + 2t + 1]; the branch's from the branch point on.
    np.testing.assert_array_equal(clips.actions[0], 200 + np.arange(10).reshape(5, 2))
    np.testing.assert_array_equal(clips.cf_actions[0, 0], [200, 201])  # before the branch point: the recorded ones
    np.testing.assert_array_equal(clips.cf_actions[0, 1:], 1000 + np.arange(8).reshape(4, 2))
    # A longer horizon no longer fits the last branch point; a non-held-out parent gives nothing.
    longer = counterfactual_clips(parent, bstore, branches, held=[2], chunk=2, context=2, horizon=4,
                                  mean=np.zeros(1, np.float32), std=np.ones(1, np.float32))
    assert longer.parents == [(2, 2), (2, 6)]
    assert counterfactual_clips(parent, bstore, branches, held=[0], chunk=2, context=2, horizon=3,
                                mean=np.zeros(1, np.float32), std=np.ones(1, np.float32)) is None


@pytest.fixture(scope="module")
def evaluated_with_branches(tmp_path_factory):
    run, datasets, _ = make_run(tmp_path_factory.mktemp("cf_run"))
    for d in datasets:
        add_branches(d)
    out = tmp_path_factory.mktemp("cf_eval")
    assert main(["eval", "--run", str(run), "--data", *map(str, datasets), "--out", str(out), "--horizon", "3",
                 "--context", "2", "--mode", "autoregressive", "--threads", "1"]) == 0
    return out


def test_eval_reports_the_counterfactual_scores_per_robot(evaluated_with_branches):
    m = json.loads((evaluated_with_branches / runner.METRICS_FILE).read_text())
    for name, r in m["per_embodiment"].items():
        cf = r["counterfactual"]
        assert cf["clips"] == 9 and cf["policies"] == {"random": 9}
        for key in ("delta_psnr", "ceiling", "psnr_true", "psnr_counterfactual", "psnr_true_vs_counterfactual"):
            assert cf[key]["lo"] <= cf[key]["mean"] <= cf[key]["hi"], (name, key)
            assert len(cf[key]["by_horizon"]) == 3
        assert cf["clips_with_motion"] > 0 and cf["motion_psnr_true"]["mean"] > 0
    assert m["overall"]["counterfactual"]["embodiments"] == len(m["per_embodiment"])
    report = (evaluated_with_branches / runner.REPORT_FILE).read_text()
    assert "counterfactual branches" in report and "ceiling" in report
    for name in m["per_embodiment"]:
        assert (evaluated_with_branches / runner.VIDEO_DIR / f"{name}{COUNTERFACTUAL_GIF_SUFFIX}").stat().st_size > 0


def test_each_table_names_its_delta_psnr_and_the_text_the_headline(evaluated_with_branches):
    text = (evaluated_with_branches / runner.REPORT_FILE).read_text()
    headers = [line for line in text.splitlines() if line.startswith("| embodiment |")]
    first, cf = headers[0], next(h for h in headers if "ceiling" in h)
    assert f"| {DELTA_RANDOM} (dB) |" in first and DELTA_BRANCHES not in first
    assert f"| {DELTA_BRANCHES} (dB) |" in cf and DELTA_RANDOM not in cf
    assert "| ΔPSNR (dB) |" not in text  # no unnamed one left
    assert f"The headline ΔPSNR of arm, cart is {DELTA_BRANCHES}" in text
    assert f"{DELTA_BRANCHES}, the headline ΔPSNR of these robots" in text


def test_counterfactual_gif_names_its_columns_and_rows(evaluated_with_branches):
    gif = iio.imread(evaluated_with_branches / runner.VIDEO_DIR / f"arm{COUNTERFACTUAL_GIF_SUFFIX}", index=None)
    panel = gifs.MIN_PANEL_HEIGHT  # 16-pixel frames, upscaled
    # "simulator | model", "true actions", top row, gap, "other actions", bottom row (each row over its bars).
    assert gif.shape[1] == 3 * gifs.LABEL_HEIGHT + 2 * (panel + 4) + gifs.ROW_GAP
    for top in (0, gifs.LABEL_HEIGHT, 2 * gifs.LABEL_HEIGHT + panel + 4 + gifs.ROW_GAP):
        strip = gif[0, top : top + gifs.LABEL_HEIGHT, :, :3]
        assert strip.min() < 100 and strip.max() > 200, top  # ink on a light strip


def test_eval_without_branches_has_no_counterfactual_section(tmp_path):
    run, datasets, _ = make_run(tmp_path)
    out = tmp_path / "eval"
    assert main(["eval", "--run", str(run), "--data", str(datasets[0]), "--out", str(out), "--horizon", "2",
                 "--mode", "autoregressive", "--threads", "1"]) == 0
    m = json.loads((out / runner.METRICS_FILE).read_text())
    assert all("counterfactual" not in r for r in m["per_embodiment"].values())
    assert "counterfactual" not in m["overall"]
