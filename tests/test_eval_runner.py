"""hma eval: held-out evaluation, metrics.json schema, report files, delta-PSNR draws."""

from __future__ import annotations

import json
import os
import re

import imageio.v3 as iio
import numpy as np
import pytest
from _helpers_eval import EMBODIMENTS, make_run, train_run

import hma.eval
from hma.cli import main
from hma.data.store import EpisodeStore
from hma.errors import ConfigError, DataError
from hma.eval import gifs, report, runner

CONTEXT, HORIZON = 2, 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("eval_run"))


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    run, datasets, _ = trained
    out = tmp_path_factory.mktemp("eval_out")
    assert main(["eval", "--run", str(run), "--data", *map(str, datasets), "--out", str(out),
                 "--horizon", str(HORIZON), "--context", str(CONTEXT), "--threads", "1"]) == 0
    return out


def test_metrics_json_schema(evaluated):
    m = json.loads((evaluated / runner.METRICS_FILE).read_text())
    assert set(m["per_embodiment"]) == set(EMBODIMENTS)
    for r in m["per_embodiment"].values():
        for key in ("psnr", "ssim", "delta_psnr", "perplexity", "fps", "recon_psnr"):
            assert isinstance(r[key], float) and np.isfinite(r[key]), key
        assert 0 < r["psnr"] <= runner.PSNR_CAP_DB and -1 <= r["ssim"] <= 1
        assert r["perplexity"] >= 1 and r["perplexity_tokens"] > 0 and r["fps"] > 0
        assert r["clips"] == 20 // (CONTEXT + HORIZON)  # one held-out episode of 20 steps, clips do not overlap
        assert set(r["modes"]) == {"teacher-forced", "autoregressive"}
        assert r["headline_mode"] == "autoregressive" and r["psnr"] == r["modes"]["autoregressive"]["psnr"]
        for mode in r["modes"].values():
            assert len(mode["psnr_by_horizon"]) == HORIZON and mode["random_draws"] == 3
        for split in ("heldout", "train"):
            acc = r["token_accuracy"][split]
            assert acc["tokens"] > 0 and all(0 <= acc[k] <= 1 for k in ("all", "unchanged", "copy"))
            if acc["changed"] is not None:  # "all" is the token-weighted mean of the two parts
                assert min(acc["unchanged"], acc["changed"]) - 1e-9 <= acc["all"] <= max(acc["unchanged"], acc["changed"]) + 1e-9
            assert acc["above_copy"] == pytest.approx(acc["all"] - acc["copy"])
        for key, env in (("lpips", "HMA_LPIPS_WEIGHTS"), ("fid", "HMA_FID_INCEPTION_WEIGHTS"), ("fvd", "HMA_FVD_I3D_WEIGHTS")):
            if not os.environ.get(env):
                assert r[key] is None and "unavailable" in r["notes"][key]
    assert m["overall"]["clips"] == sum(r["clips"] for r in m["per_embodiment"].values())
    assert m["overall"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in m["per_embodiment"].values()]))
    assert m["options"]["horizon"] == HORIZON and m["options"]["holdout"] == 0.1
    assert m["overall"]["token_accuracy"]["heldout"]["all"] == pytest.approx(
        np.mean([r["token_accuracy"]["heldout"]["all"] for r in m["per_embodiment"].values()]))


def test_report_files_are_valid(evaluated):
    report = (evaluated / runner.REPORT_FILE).read_text()
    assert "## Next-frame tokens" in report
    for name in EMBODIMENTS:
        assert f"| {name} |" in report and f"videos/{name}.gif" in report
        gif = iio.imread(evaluated / runner.VIDEO_DIR / f"{name}.gif", index=None)
        # One frame per clip frame; real | teacher-forced | autoregressive side by side, under their labels.
        assert gif.shape[0] == CONTEXT + HORIZON and gif.shape[2] > 3 * (gif.shape[1] - gifs.LABEL_HEIGHT) * 0.9
    plot = iio.imread(evaluated / runner.PSNR_PLOT_FILE)
    assert plot.ndim == 3 and plot.shape[0] > 100 and plot.std() > 0


def _tables(text: str) -> list[list[list[str]]]:
    """Every markdown table of a report as rows of cells, the header first (the |---| line dropped)."""
    tables, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def test_report_has_no_column_without_a_value(evaluated):
    text = (evaluated / runner.REPORT_FILE).read_text()
    tables = _tables(text)
    assert len(tables) >= 3
    for header, *rows in tables:
        for j, title in enumerate(header):
            assert any(row[j] != report.MISSING for row in rows), f"column {title!r} has no value on any row"
    # A metric left out is explained once, in a note line naming its column and what it needs.
    for title, env in (("LPIPS", "HMA_LPIPS_WEIGHTS"), ("FID", "HMA_FID_INCEPTION_WEIGHTS"), ("FVD", "HMA_FVD_I3D_WEIGHTS")):
        if not os.environ.get(env):
            assert title not in tables[0][0]
            assert len(re.findall(rf"^- No {title} column: {title} unavailable: set {env} ", text, re.M)) == 1
            assert f"- {title.lower()}: " not in text


def test_compact_table_keeps_a_column_with_one_value():
    table, notes = report.compact_table(["robot", "a", "b"], [["x", "–", "–"], ["y", "1.0", "–"]], why={"b": "no b"})
    assert table.splitlines()[0] == "| robot | a |" and notes == ["No b column: no b."]


def test_every_delta_psnr_is_named(evaluated):
    text = (evaluated / runner.REPORT_FILE).read_text()
    titles = [c for header, *_ in _tables(text) for c in header if "ΔPSNR" in c]
    assert len(titles) == 3  # the first table's, and one per mode
    assert all(report.DELTA_RANDOM in c for c in titles)
    assert "It is the headline ΔPSNR of every robot" in text  # no simulator branches in these data


def test_gifs_name_their_panels_in_a_label_strip(evaluated, trained):
    _, datasets, _ = trained
    h = EpisodeStore(datasets[0]).image_size[0]
    gif = iio.imread(evaluated / runner.VIDEO_DIR / "arm.gif", index=None)[..., :3].astype(int)
    panel = max(1, gifs.MIN_PANEL_HEIGHT // h) * h
    assert gif.shape[1] == gifs.LABEL_HEIGHT + panel + 4  # the strip above the panels and their context bars
    strip = gif[:, : gifs.LABEL_HEIGHT]
    assert np.abs(strip - strip[0]).mean() < 2  # the same labels in every frame (up to each frame's GIF palette)
    for k in range(3):  # real | teacher-forced | autoregressive: dark ink on white above each panel
        cell = strip[0, :, k * (panel + gifs.PANEL_GAP) : k * (panel + gifs.PANEL_GAP) + panel]
        assert cell.min() < 100 and cell.max() > 200, k


def test_label_strips_differ_by_label():
    real, model = gifs.label_strip(["real"], 128), gifs.label_strip(["model"], 128)
    assert real.shape == model.shape == (gifs.LABEL_HEIGHT, 128, 3) and (real != model).any()
    # A label wider than its panel stays inside it.
    two = gifs.label_strip(["a very long label that does not fit", ""], 40)
    assert (two[:, 40 + gifs.PANEL_GAP :] == 255).all()


def test_plot_legend_sits_outside_the_axes(tmp_path):
    modes = {m: {"psnr_by_horizon": [20.0, 19.0, 18.0], "copy_psnr_by_horizon": [21.0, 19.5, 18.5]}
             for m in ("teacher-forced", "autoregressive")}
    result = {"per_embodiment": {f"robot{i}": {"modes": modes} for i in range(5)}}
    fig = report.psnr_figure(result)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert len(legend.get_texts()) == 15
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # right of the curves, not over them
    report.psnr_plot(result, tmp_path / "plot.png")  # and the saved file makes room for it
    assert iio.imread(tmp_path / "plot.png").shape[1] > legend.get_window_extent().x1 * 120 / fig.dpi - 5


def test_eval_defaults_to_the_runs_data_and_an_eval_folder_of_its_name(trained, tmp_path, monkeypatch, capsys):
    run, datasets, _ = trained
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--run", str(run), "--horizon", "2", "--mode", "autoregressive", "--threads", "1"]) == 0
    m = json.loads((tmp_path / "eval" / run.name / runner.METRICS_FILE).read_text())
    assert sorted(m["data"]) == sorted(str(d) for d in datasets) and set(m["per_embodiment"]) == set(EMBODIMENTS)
    for d in datasets:  # moved away: nothing to evaluate on, said in one line
        d.rename(d.with_name(d.name + ".away"))
    try:
        assert main(["eval", "--run", str(run), "--horizon", "2", "--threads", "1"]) == 2
        assert "training datasets is on disk; expected --data" in capsys.readouterr().err
    finally:
        for d in datasets:
            d.with_name(d.name + ".away").rename(d)


def test_speed_is_shown_with_the_machine_load(trained, tmp_path, capsys):
    run, datasets, _ = trained
    assert main(["eval", "--run", str(run), "--data", str(datasets[0]), "--out", str(tmp_path), "--horizon", "2",
                 "--mode", "autoregressive", "--threads", "1"]) == 0
    cores = os.cpu_count()
    speed = rf"[0-9.]+ frames/s \(load ([0-9]+\.[0-9]{{2}}|n/a) on {cores} cores\)"
    assert re.search(rf"^arm: PSNR .*, {speed} \(", capsys.readouterr().out, re.M)
    assert re.search(rf"^Speed of the autoregressive rollouts .*: arm {speed}\.$", (tmp_path / runner.REPORT_FILE).read_text(), re.M)
    load = json.loads((tmp_path / runner.METRICS_FILE).read_text())["per_embodiment"]["arm"]["load"]
    assert load["cpu_count"] == cores and (load["load_average"] is None or load["load_average"] >= 0)
    assert report.fps_text(12.34, {"load_average": 1.049, "cpu_count": 2}) == "12.3 frames/s (load 1.05 on 2 cores)"


def test_delta_psnr_uses_every_random_draw(trained, tmp_path, monkeypatch):
    run, datasets, _ = trained
    calls = []
    original = runner.random_action_chunks

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "random_action_chunks", counting)
    r = hma.eval.evaluate(run, datasets[:1], tmp_path, horizon=2, mode="autoregressive", random_draws=4, report=False)
    scores = r["per_embodiment"]["arm"]["modes"]["autoregressive"]
    assert len(calls) == 4 and scores["random_draws"] == 4
    assert scores["delta_psnr"] == pytest.approx(scores["psnr"] - scores["psnr_random_actions"], abs=1e-4)
    with pytest.raises(ConfigError, match="at least 3"):
        hma.eval.evaluate(run, datasets[:1], tmp_path, random_draws=2)


def test_passive_run_ignores_actions(trained, tmp_path):
    # A video-setting run is evaluated with actions hidden, and every draw shares the
    # sampling noise, so true and random actions give the same frames: delta-PSNR is 0.
    _, datasets, tokenizer = trained
    run = train_run(tmp_path / "passive", datasets, tokenizer, setting="video", steps=3)
    r = hma.eval.evaluate(run, datasets, tmp_path / "out", horizon=2, mode="autoregressive", temperature=1.0,
                          report=False)
    for scores in r["per_embodiment"].values():
        assert scores["delta_psnr"] == pytest.approx(0.0, abs=1e-5) and scores["perplexity"] > 1


def test_bad_inputs(trained, tmp_path):
    run, datasets, _ = trained
    with pytest.raises(DataError, match="no held-out episode fits"):
        hma.eval.evaluate(run, datasets[:1], tmp_path, horizon=40, report=False)
    with pytest.raises(ConfigError, match="evaluation mode"):
        hma.eval.evaluate(run, datasets[:1], tmp_path, mode="sideways")
    with pytest.raises(ConfigError, match="option\\(s\\) horizn unknown"):
        hma.eval.evaluate(run, datasets[:1], tmp_path, horizn=2)
    # Options as one record, changed by keyword: the keyword wins.
    opts = hma.eval.EvalOptions(horizon=2, mode="autoregressive", random_draws=3)
    r = hma.eval.evaluate(run, datasets[:1], tmp_path, opts, seed=5, report=False)
    assert r["options"]["horizon"] == 2 and r["options"]["seed"] == 5 and r["options"]["mode"] == "autoregressive"


def test_generation_precision_is_an_option_and_recorded(trained, tmp_path):
    run, datasets, _ = trained
    r = hma.eval.evaluate(run, datasets[:1], tmp_path, horizon=2, mode="autoregressive", precision="int8", report=False)
    assert r["options"]["precision"] == "int8" and np.isfinite(r["overall"]["psnr"])
    with pytest.raises(ConfigError, match="precision 'fp8' is unknown"):
        hma.eval.evaluate(run, datasets[:1], tmp_path, precision="fp8", report=False)


def test_auto_precision_is_resolved_for_this_machine_and_named_in_the_report(trained, tmp_path, monkeypatch, capsys):
    import hma.sampling.precision as precision

    run, datasets, _ = trained
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"fpu", "avx512_vnni"}))
    out = tmp_path / "vnni"
    assert main(["eval", "--run", str(run), "--data", str(datasets[0]), "--out", str(out), "--horizon", "2",
                 "--mode", "autoregressive", "--episodes", "1", "--threads", "1", "--no-progress"]) == 0
    named = "precision auto -> int8 (avx512_vnni)"
    assert f"generated at {named}" in capsys.readouterr().out
    options = json.loads((out / runner.METRICS_FILE).read_text())["options"]
    assert options["precision"] == "int8" and options["precision_choice"] == named
    assert named in (out / runner.REPORT_FILE).read_text()
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"fpu"}))
    options = hma.eval.evaluate(run, datasets[:1], tmp_path / "plain", horizon=2, mode="autoregressive", episodes=1,
                                report=False)["options"]
    assert options["precision"] == "fp32" and options["precision_choice"].startswith("precision auto -> fp32 (CPU without")


def test_copy_baseline_and_motion_psnr_per_horizon_step():
    """A square moves one pixel per frame: the copy baseline holds the last context frame,
    motion PSNR looks only where the real frames moved."""
    b, h, size = 2, 3, 16
    last = np.zeros((b, size, size, 3), np.uint8)
    last[:, 4:8, 4:8] = 255
    real = np.zeros((b, h, size, size, 3), np.uint8)
    for i in range(h):
        real[:, i, 4:8, 5 + i : 9 + i] = 255
    real[1] = last[1]  # the second clip does not move at all
    randoms = [np.zeros_like(real) for _ in range(3)]
    held = np.broadcast_to(last[:, None], real.shape)
    perfect = runner._mode_scores(real, real, randoms, hma.eval.metrics.FeatureNets(), last)
    copied = runner._mode_scores(held.copy(), real, randoms, hma.eval.metrics.FeatureNets(), last)
    assert copied["psnr_by_horizon"] == pytest.approx(copied["copy_psnr_by_horizon"])
    assert perfect["copy_psnr_by_horizon"] == copied["copy_psnr_by_horizon"]
    # The copy baseline gets worse as the square moves away; a perfect prediction is capped everywhere.
    assert copied["copy_psnr_by_horizon"][0] > copied["copy_psnr_by_horizon"][-1]
    assert perfect["motion_psnr_by_horizon"] == pytest.approx([runner.PSNR_CAP_DB] * h)
    # Only the first clip moved: its moved pixels are where the copy is wrong by the full range.
    assert copied["motion_psnr_by_horizon"] == pytest.approx([0.0] * h, abs=1e-6)
    still = runner._mode_scores(held.copy()[1:], real[1:], [r[1:] for r in randoms], hma.eval.metrics.FeatureNets(), last[1:])
    assert still["motion_psnr_by_horizon"] == [None] * h
    json.dumps(still)  # no NaN reaches the metrics file
