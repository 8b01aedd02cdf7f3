"""hma experiment: a recipe trains, evaluates, and writes results.json, its table and its docs section."""

from __future__ import annotations

import json
import tempfile

import pytest
from _helpers_eval import add_branches
from _helpers_train import make_tokenized

from hma.cli import main
from hma.errors import ConfigError
from hma.experiments.runs import Budget, ExperimentOptions
from hma.experiments.recipes import run_experiment
from hma.experiments.results import (RESULTS_INTRO, RESULTS_TITLE, WORK, recipe_section, shown_paths,
                                     update_results_section)


def test_actions_recipe_writes_results_table_and_docs_section(tmp_path):
    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2, "cart": 3})
    docs = tmp_path / "docs" / "results.md"
    docs.parent.mkdir()
    docs.write_text("# Results\n\nintro kept\n\n<!-- hma-experiment:methods:begin -->\nold methods\n"
                    "<!-- hma-experiment:methods:end -->\n")
    out = tmp_path / "exp"
    assert main(["experiment", "actions", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
                 "--out", str(out), "--steps", "2", "--horizon", "2", "--eval-episodes", "1",
                 "--results-md", str(docs), "--threads", "1", "--no-progress"]) == 0

    result = json.loads((out / "actions" / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["passive video", "forward dynamics", "full dynamics", "mixed settings"]
    for row in result["rows"]:
        assert row["steps"] == 2 and row["params"] > 0 and row["perplexity"] > 1
        assert isinstance(row["delta_psnr"], float)
        # The run's own ΔPSNR with its interval over the evaluated clips.
        assert row["delta_interval"].startswith(f"{row['delta_psnr']:.2f} [")
    assert result["budget"].startswith("2 optimizer steps")
    # Three comparisons with the passive run, the same three paired per clip with their intervals, the recipe.
    assert len(result["findings"]) == 7
    for finding in result["findings"][3:6]:
        assert "paired per clip" in finding and " dB [" in finding and "interval" in finding
    assert "changed tokens x10" in result["findings"][6]
    config = json.loads((out / "actions" / "runs" / "full" / "config.json").read_text())
    assert config["model"]["changed_token_weight"] == 10.0 and config["train"]["setting"] == "full"

    table = (out / "actions" / "section.md").read_text()
    assert "| passive video |" in table and "| full dynamics |" in table
    text = docs.read_text()
    assert text.startswith("# Results\n\nintro kept")
    # Sections keep the canonical order (actions before methods) and the other section is untouched.
    assert text.index("hma-experiment:actions:begin") < text.index("old methods")
    # The docs show the command with the scratch folder as $WORK; results.json keeps the real one.
    assert shown_paths(result["command"]) in text and result["date"] in text and table.strip() in text
    assert str(tmp_path) in result["command"]
    if str(tmp_path).startswith(tempfile.gettempdir()):  # pytest's default folder
        assert str(tmp_path) not in text
    assert result["command"].startswith("hma experiment actions --out ") and "--steps 2" in result["command"]
    assert f"--data {tmp_path / 'data'}" in result["command"]

    # A second run into the same folder is refused instead of mixing old and new runs.
    assert main(["experiment", "actions", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
                 "--out", str(out), "--steps", "2", "--results-md", str(docs)]) == 2

    # --render-only writes the same section again from results.json, training nothing.
    (out / "actions" / "section.md").unlink()
    docs.write_text(text.replace(table.strip(), "stale table"))
    assert main(["experiment", "actions", "--out", str(out), "--render-only", "--results-md", str(docs)]) == 0
    assert docs.read_text() == text and (out / "actions" / "section.md").read_text() == table
    assert sorted(p.name for p in (out / "actions" / "runs").iterdir()) == ["forward", "full", "mixed", "video"]
    (out / "actions" / "results.json").write_text('{"rows": ')
    assert main(["experiment", "actions", "--out", str(out), "--render-only", "--results-md", str(docs)]) == 2


def test_injection_recipe_gives_each_mode_an_interval_and_a_paired_difference(tmp_path):
    make_tokenized(tmp_path, embodiments={"arm": 2})
    docs = tmp_path / "results.md"
    assert main(["experiment", "injection", "--data", str(tmp_path / "data"), "--tokenizer", str(tmp_path / "tokenizer_tok"),
                 "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--eval-episodes", "1",
                 "--results-md", str(docs), "--threads", "1", "--no-progress"]) == 0
    result = json.loads((tmp_path / "exp" / "injection" / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["concat", "modulate", "add", "cross_attention"]
    assert all(r["delta_interval"].startswith(f"{r['delta_psnr']:.2f} [") for r in result["rows"])
    assert "paired per clip" in result["findings"][-2] and "ΔPSNR [95%] over clips" in docs.read_text()
    assert "changed tokens x10" in result["findings"][-1]


def test_results_section_is_replaced_not_duplicated(tmp_path):
    doc = tmp_path / "results.md"
    update_results_section(doc, "injection", "first injection")
    update_results_section(doc, "actions", "actions table")
    update_results_section(doc, "injection", "second injection")
    text = doc.read_text()
    assert text.count("hma-experiment:injection:begin") == 1 and "first injection" not in text
    assert text.index("actions table") < text.index("second injection")


def test_results_sections_show_scratch_paths_as_work(tmp_path):
    scratch = tempfile.gettempdir()
    result = {"date": "today", "command": f"hma experiment actions --out {scratch}/w/act --data /data/keep",
              "budget": "2 steps", "options": {"preset": "tiny", "batch_size": 8, "lr": 1e-3}, "preset_config": "c",
              "eval": "e", "threads": 1, "rows": [{"label": "a", "x": 1.0}], "findings": [f"run in `{scratch}/w/a`"]}
    section = recipe_section("actions", "t", "c", [("x", "x", "{:.1f}")], result)
    assert f"--out {WORK}/w/act --data /data/keep" in section and f"run in `{WORK}/w/a`" in section
    assert "/tmp/" not in section and result["command"].startswith(f"hma experiment actions --out {scratch}/w/act")
    # Every section goes through update_results_section, whichever renderer made it.
    doc = tmp_path / "results.md"
    update_results_section(doc, "speed", "## speed\n\n```\nhma bench --json /tmp/w/b.json --out=/tmp/x\n```\n"
                                         "not /var/tmp/y nor /tmpfiles/z")
    text = doc.read_text()
    assert text.startswith(RESULTS_TITLE + "\n" + RESULTS_INTRO) and f"`{WORK}` stands for the scratch folder" in text
    assert f"--json {WORK}/w/b.json --out={WORK}/x" in text and "not /var/tmp/y nor /tmpfiles/z" in text


def test_the_results_file_says_what_work_stands_for_and_re_renders_alike():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    assert text.startswith(RESULTS_TITLE + "\n" + RESULTS_INTRO) and f"{WORK}/" in text
    assert shown_paths(text) == text


def test_methods_needs_both_token_kinds(tmp_path):
    datasets, tokenizer = make_tokenized(tmp_path)
    opts = ExperimentOptions(data=[str(d) for d in datasets], tokenizers=[str(tokenizer)], out=tmp_path / "exp",
                             budget=Budget(steps=1), results_file=tmp_path / "results.md")
    with pytest.raises(ConfigError, match="needs a continuous tokenizer"):
        run_experiment("methods", opts)
    with pytest.raises(ConfigError, match="exactly one training budget"):
        Budget(steps=1, minutes=1.0)
    with pytest.raises(ConfigError, match="unknown"):
        run_experiment("scaled", opts)
    with pytest.raises(ConfigError, match="needs --axis"):
        run_experiment("scaling", opts)


def test_levers_recipe_scores_every_lever_against_the_counterfactual_branches(tmp_path):
    from hma.experiments.levers import LEVERS

    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2})
    docs = tmp_path / "results.md"
    argv = ["experiment", "levers", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
            "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--preset", "tiny",
            "--results-md", str(docs), "--threads", "1", "--no-progress"]
    assert main(argv) == 2  # no branches yet: a one-line error saying what the recipe needs
    for d in datasets:
        add_branches(d, steps=(2, 6, 10))
    assert main(argv) == 0
    result = json.loads((tmp_path / "exp" / "levers" / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == [lever.label for lever in LEVERS]
    for row in result["rows"]:
        assert row["cf_embodiments"] == 1 and isinstance(row["cf_mean_delta_psnr"], float)
        assert row["robots"].endswith("of 1")
    runs = tmp_path / "exp" / "levers" / "runs"
    config = json.loads((runs / "5hz" / "config.json").read_text())
    assert config["model"]["frame_hz"] == 5.0 and config["model"]["changed_token_weight"] == 10.0
    assert config["train"]["setting"] == "forward"
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["twice the training steps"]["steps"] == 4 and rows["demo recipe: forward, 10 Hz, changed tokens x10"]["steps"] == 2
    # Rows that change only the sampling score the demo run again instead of training one.
    assert not (runs / "demo_int8").exists() and rows["int8 generation"]["run"] == rows[LEVERS[0].label]["run"]
    metrics = json.loads((tmp_path / "exp" / "levers" / "eval" / "demo_4_steps" / "metrics.json").read_text())
    assert metrics["options"]["unmask_steps"] == 4
    assert "## levers:" in docs.read_text() and len(result["findings"]) == len(LEVERS)


def test_generalization_recipe_trains_fewer_episodes_and_scores_sampling_rows_on_their_runs(tmp_path, monkeypatch, capsys):
    from hma.experiments.levers import GENERALIZATION

    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2}, episodes=20)
    for d in datasets:
        add_branches(d, steps=(2, 6, 10))
    docs = tmp_path / "results.md"
    assert main(["experiment", "generalization", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
                 "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--preset", "micro",
                 "--results-md", str(docs), "--threads", "1", "--no-progress"]) == 0
    folder = tmp_path / "exp" / "generalization"
    result = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == [lever.label for lever in GENERALIZATION]
    for row in result["rows"]:
        assert 0 <= row["tokens_all"] <= 1 and 0 <= row["tokens_copy"] <= 1 and 0 <= row["tokens_train_all"] <= 1
    config = json.loads((folder / "runs" / "demo_data" / "config.json").read_text())
    assert 0 < config["train"]["train_fraction"] < 1  # 14 training episodes of more
    assert json.loads((folder / "runs" / "dropout" / "config.json").read_text())["model"]["action_dropout"] == 0.15
    guided = json.loads((folder / "eval" / "guided" / "metrics.json").read_text())["options"]
    adjusted = json.loads((folder / "eval" / "adjusted" / "metrics.json").read_text())["options"]
    assert guided["action_guidance"] == 2.0 and adjusted["logit_adjustment"] == 1.0
    assert not (folder / "runs" / "guided").exists() and not (folder / "runs" / "adjusted").exists()
    assert json.loads((folder / "runs" / "visible_past" / "config.json").read_text())["model"]["visible_past"] == 0.5
    assert "## generalization:" in docs.read_text()

    # Run again: refused without --resume; with it, nothing is trained or evaluated anew.
    argv = ["experiment", "generalization", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
            "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--preset", "micro",
            "--results-md", str(docs), "--threads", "1", "--no-progress"]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    import hma.eval.runner
    import hma.train

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run or evaluation was made again")

    monkeypatch.setattr(hma.train, "train", refuse)
    monkeypatch.setattr(hma.eval.runner, "evaluate", refuse)
    assert main([*argv, "--resume"]) == 0
    again = json.loads((folder / "results.json").read_text())
    assert [r["delta_psnr"] for r in again["rows"]] == [r["delta_psnr"] for r in result["rows"]]
    # A changed step budget is a different run: trained again.
    with pytest.raises(AssertionError, match="made again"):
        main([*argv, "--resume", "--steps", "3"])


def test_world_model_recipe_writes_one_row_per_robot_with_its_branch_scores(tmp_path):
    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2, "cart": 3})
    docs = tmp_path / "results.md"
    argv = ["experiment", "world-model", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
            "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--preset", "micro",
            "--results-md", str(docs), "--threads", "1", "--no-progress"]
    assert main(argv) == 2  # no branches: a one-line error saying what the recipe needs
    for d in datasets:
        add_branches(d, steps=(2, 6, 10))
    assert main(argv) == 0
    result = json.loads((tmp_path / "exp" / "world-model" / "results.json").read_text())
    assert sorted(r["label"] for r in result["rows"]) == ["arm", "cart"]
    for row in result["rows"]:
        assert row["clips"] > 0 and row["follows"] in ("yes", "no") and row["steps"] == 2
        assert row["delta"].count("[") == 1 and isinstance(row["ceiling"], float)
    config = json.loads((tmp_path / "exp" / "world-model" / "runs" / "demo_recipe" / "config.json").read_text())
    assert config["model"]["changed_token_weight"] == 10.0 and config["train"]["setting"] == "forward"
    text = docs.read_text()
    assert "## world-model:" in text and "| arm |" in text and "of 2 robots" in text


def test_long_horizon_recipe_rolls_out_ten_windows_beside_the_copy_baseline(tmp_path):
    import imageio.v3 as iio

    make_tokenized(tmp_path, embodiments={"arm": 2, "cart": 3}, length=50)
    docs = tmp_path / "docs" / "results.md"
    assert main(["experiment", "long-horizon", "--data", str(tmp_path / "data"), "--tokenizer",
                 str(tmp_path / "tokenizer_tok"), "--out", str(tmp_path / "exp"), "--steps", "2", "--preset", "micro",
                 "--eval-episodes", "1", "--results-md", str(docs), "--threads", "1", "--no-progress"]) == 0
    result = json.loads((tmp_path / "exp" / "long-horizon" / "results.json").read_text())
    metrics = json.loads((tmp_path / "exp" / "long-horizon" / "eval" / "demo_recipe" / "metrics.json").read_text())
    assert metrics["options"]["horizon"] == 40 and metrics["options"]["mode"] == "autoregressive"  # 10 x window 4
    for row in result["rows"]:
        scores = metrics["per_embodiment"][row["label"]]["modes"]["autoregressive"]
        assert row["horizon"] == 40 and len(scores["copy_psnr_by_horizon"]) == 40
        # The bands are means of the per-step curves: the first and the last of ten windows.
        assert row["psnr_first"] == pytest.approx(sum(scores["psnr_by_horizon"][:4]) / 4)
        assert row["copy_last"] == pytest.approx(sum(scores["copy_psnr_by_horizon"][36:]) / 4)
        above = sum(p > c for p, c in zip(scores["psnr_by_horizon"], scores["copy_psnr_by_horizon"]))
        assert row["above_copy"] == above and row["psnr_last_interval"].startswith(f"{row['psnr_last']:.2f}")
    text = docs.read_text()
    assert "## long-horizon:" in text and "assets/long-horizon.png" in text and "assets/long-horizon.gif" in text
    plot = iio.imread(docs.parent / "assets" / "long-horizon.png")
    gif = iio.imread(docs.parent / "assets" / "long-horizon.gif", index=None)
    # A long rollout (GIF writers merge repeated frames, so not always exactly context + 40).
    assert plot.std() > 0 and 4 * 4 < gif.shape[0] <= 2 + 40


def test_earlier_scale_names_are_these_presets():
    from hma.config import PRESETS, preset
    from hma.experiments.runs import SCALE_PRESETS

    # The trunks the recipes trained as `--scale NAME` (overrides of the tiny preset) before
    # those sizes became presets: the same models under their preset names.
    earlier = {"tiny": dict(num_blocks=2, width=64, num_heads=4, num_frames=4, diffusion_width=128, diffusion_blocks=2),
               "small": dict(num_blocks=4, width=128, num_heads=4, num_frames=8, diffusion_width=256, diffusion_blocks=3),
               "demo": dict(num_blocks=2, width=128, num_heads=4, num_frames=4, diffusion_width=256, diffusion_blocks=3)}
    assert set(earlier) == set(SCALE_PRESETS)
    for scale, overrides in earlier.items():
        assert preset("tiny", **overrides) == PRESETS[SCALE_PRESETS[scale]], scale


def test_scaling_in_embodiments_evaluates_every_point_on_the_same_robot(tmp_path):
    import imageio.v3 as iio

    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2, "cart": 3})
    for d in datasets:
        add_branches(d, steps=(2, 6, 10))
    docs = tmp_path / "docs" / "results.md"
    argv = ["experiment", "scaling", "--axis", "embodiments", "--target", "cart", "--data", str(tmp_path / "data"),
            "--tokenizer", str(tokenizer), "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2",
            "--preset", "micro", "--eval-episodes", "1", "--results-md", str(docs), "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    folder = tmp_path / "exp" / "scaling-embodiments"
    result = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["1 robot", "2 robots"] and [r["x"] for r in result["rows"]] == [1, 2]
    one = json.loads((folder / "runs" / "robots_1" / "config.json").read_text())
    two = json.loads((folder / "runs" / "robots_2" / "config.json").read_text())
    assert sorted(one["model"]["embodiments"]) == ["cart"] and sorted(two["model"]["embodiments"]) == ["arm", "cart"]
    for label in ("robots_1", "robots_2"):
        metrics = json.loads((folder / "eval" / label / "metrics.json").read_text())
        assert sorted(metrics["per_embodiment"]) == ["cart"]  # the same robot's held-out clips at every point
    for row in result["rows"]:
        assert row["steps"] == 2 and row["delta_interval"].startswith(f"{row['delta_psnr']:.2f} [")
        assert isinstance(row["cf_delta_psnr"], float) and row["cf_delta"].count("[") == 1
        assert row["delta_lo_hi"][0] <= row["delta_psnr"] <= row["delta_lo_hi"][1]
    assert any("paired per clip" in f and "2 robots minus 1 robot" in f for f in result["findings"])
    text = docs.read_text()
    assert "## scaling-embodiments:" in text and "assets/scaling-embodiments.png" in text
    assert iio.imread(docs.parent / "assets" / "scaling-embodiments.png").std() > 0
    # --render-only needs the axis too, and writes the same section again.
    assert main(["experiment", "scaling", "--axis", "embodiments", "--out", str(tmp_path / "exp"), "--render-only",
                 "--results-md", str(docs)]) == 0
    assert docs.read_text() == text
    argv[argv.index("cart")] = "dog"
    argv[argv.index(str(tmp_path / "exp"))] = str(tmp_path / "exp2")
    assert main(argv) == 2  # an unknown --target: one line naming the robots there are


@pytest.mark.slow
def test_scaling_in_trajectories_and_size_trains_four_points_each(tmp_path):
    make_tokenized(tmp_path, embodiments={"arm": 2}, episodes=10)
    docs = tmp_path / "results.md"
    for axis in ("trajectories", "size"):
        assert main(["experiment", "scaling", "--axis", axis, "--data", str(tmp_path / "data"), "--tokenizer",
                     str(tmp_path / "tokenizer_tok"), "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2",
                     "--preset", "micro", "--eval-episodes", "1", "--results-md", str(docs), "--threads", "1",
                     "--no-progress"]) == 0
    folder = tmp_path / "exp" / "scaling-trajectories"
    rows = json.loads((folder / "results.json").read_text())["rows"]
    # 10 episodes: 9 for training (1 held out); 12.5%, 25%, 50%, 100% of them.
    assert [r["x"] for r in rows] == [1, 2, 4, 9]
    assert json.loads((folder / "runs" / "episodes_0.25" / "config.json").read_text())["train"]["train_fraction"] == 0.25
    held = {json.dumps(json.loads((folder / "eval" / p / "metrics.json").read_text())["per_embodiment"]["arm"]["clips"])
            for p in ("episodes_0.125", "episodes_1")}
    assert len(held) == 1  # the same held-out clips whatever the training share
    sizes = json.loads((tmp_path / "exp" / "scaling-size" / "results.json").read_text())["rows"]
    assert [r["label"] for r in sizes] == ["2 blocks x 64", "2 blocks x 128", "4 blocks x 128", "6 blocks x 192"]
    assert [r["x"] for r in sizes] == [r["params"] for r in sizes] and sorted(r["params"] for r in sizes) == [r["params"] for r in sizes]
    text = docs.read_text()
    assert text.index("## scaling-trajectories:") < text.index("## scaling-size:")


def test_generalization_long_repeats_the_rows_that_moved_in_a_section_of_its_own(tmp_path):
    from hma.experiments.levers import GENERALIZATION, LONG_ROWS

    datasets, tokenizer = make_tokenized(tmp_path, embodiments={"arm": 2}, episodes=20)
    for d in datasets:
        add_branches(d, steps=(2, 6, 10))
    docs = tmp_path / "results.md"
    update_results_section(docs, "generalization", "## generalization: the 2,000-step rows")
    assert main(["experiment", "generalization-long", "--data", str(tmp_path / "data"), "--tokenizer", str(tokenizer),
                 "--out", str(tmp_path / "exp"), "--steps", "2", "--horizon", "2", "--preset", "micro",
                 "--results-md", str(docs), "--threads", "1", "--no-progress"]) == 0
    result = json.loads((tmp_path / "exp" / "generalization-long" / "results.json").read_text())
    assert [r["label"] for r in result["rows"]] == [lever.label for lever in GENERALIZATION if lever.name in LONG_ROWS]
    text = docs.read_text()
    assert "## generalization: the 2,000-step rows" in text and "## generalization-long:" in text
