"""Policy evaluation, synthetic data, success classifier and BC on the toy world."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from _helpers_envs import CHUNK, EMBODIMENT, IMAGE, RuleClassifier, ToySim, make_run, make_store
from hma.apps import evaluate_policies, synthesize, train_bc
from hma.experiments.synth_bc import run_synth_bc
from hma.apps.bc_policy import load_bc_policy
from hma.apps.policy import parse_policy
from hma.apps.policy_eval import correlations
from hma.experiments.policy_ranking import target_met, task_meets_target
from hma.eval.gifs import LABEL_HEIGHT
from hma.eval.success import calibrate_episode_rule, load_success_classifier, longest_run, train_success_classifier
from hma.data.store import DatasetInfo, EpisodeStore, StoreWriter
from hma.errors import ConfigError, DataError


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("apps") / "toy", episodes=10, length=24)


@pytest.fixture(scope="module")
def run(store):
    return make_run(store)


def test_synth_writes_a_valid_resumable_dataset(run, store, tmp_path, monkeypatch):
    import hma.apps.synth as synth

    calls = {"n": 0}
    original = synth._generate

    def dies_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(synth, "_generate", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        synthesize(run, EMBODIMENT, episodes=3, out=tmp_path / "syn", dataset=store.root, steps=5, batch_size=2)
    assert not (tmp_path / "syn").exists() and (tmp_path / "syn.partial").exists()
    monkeypatch.setattr(synth, "_generate", original)
    out = synthesize(run, EMBODIMENT, episodes=3, out=tmp_path / "syn", dataset=store.root, steps=5, batch_size=2)
    assert calls["n"] == 2  # the resumed run generated only the missing episode
    syn = EpisodeStore(out.root, verify=True)
    assert syn.num_episodes == 3 and syn.embodiment == EMBODIMENT and syn.control_hz == store.control_hz
    assert syn.num_frames == 3 * 5 * CHUNK and syn.meta["extra"]["synthetic"]["source_dataset"] == str(store.root)
    ep = syn.episode(0)
    # Each generated frame is held for the CHUNK control steps of its action chunk.
    np.testing.assert_array_equal(ep["frames"][0], ep["frames"][1])
    np.testing.assert_array_equal(ep["frames"][0], store.episode(0)["frames"][0])
    low, high = store.action_stats["min"], store.action_stats["max"]
    assert (ep["actions"] >= low - 1e-6).all() and (ep["actions"] <= high + 1e-6).all()
    # The state: the source's recorded one at frame 0, then the state head's read-out, held like the frames.
    assert syn.state_names == store.state_names and ep["state"].shape == (5 * CHUNK, 2)
    np.testing.assert_array_equal(ep["state"][0], store.episode(0)["state"][0])
    np.testing.assert_array_equal(ep["state"][CHUNK], ep["state"][CHUNK + 1])
    assert not np.array_equal(ep["state"][0], ep["state"][CHUNK])
    # The same call again reuses the finished dataset; a different one is refused, naming both.
    monkeypatch.setattr(synth, "_generate", dies_on_second_batch)
    again = synthesize(run, EMBODIMENT, episodes=3, out=tmp_path / "syn", dataset=store.root, steps=5, batch_size=2)
    assert calls["n"] == 2 and again.num_episodes == 3
    with pytest.raises(DataError, match=r"already exists with 3 synthetic episodes .* expected 4 of .*seed': 1"):
        synthesize(run, EMBODIMENT, episodes=4, out=tmp_path / "syn", dataset=store.root, steps=5, seed=1)


def test_synth_killed_inside_a_batch_resumes_to_the_uninterrupted_result(run, store, tmp_path, monkeypatch):
    from hma.data.store import StoreWriter

    kwargs = dict(episodes=5, dataset=store.root, steps=4, batch_size=3, seed=1)
    original = StoreWriter.add_episode

    def dies_after_four(self, *args, **kw):
        if self.num_staged == 4:  # episode 4 is the second of the second batch
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(StoreWriter, "add_episode", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        synthesize(run, EMBODIMENT, out=tmp_path / "killed", **kwargs)
    monkeypatch.setattr(StoreWriter, "add_episode", original)
    resumed = synthesize(run, EMBODIMENT, out=tmp_path / "killed", **kwargs)
    whole = synthesize(run, EMBODIMENT, out=tmp_path / "whole", **kwargs)
    np.testing.assert_array_equal(np.asarray(resumed.frames), np.asarray(whole.frames))
    np.testing.assert_array_equal(np.asarray(resumed.actions), np.asarray(whole.actions))


def test_a_synthetic_dataset_says_so_and_names_its_run(run, store, tmp_path, capsys):
    from dataclasses import replace

    from hma.cli import main
    from hma.data.windows import WindowDataset

    sealed = replace(run, config={**run.config, "weights_sha256": "0123456789abcdef" * 4})
    syn = synthesize(sealed, EMBODIMENT, episodes=2, out=tmp_path / "syn", dataset=store.root, steps=4, batch_size=2)
    assert syn.synthetic and syn.meta["synthetic"] is True and not store.synthetic and "synthetic" not in store.meta
    made = syn.meta["extra"]["synthetic"]
    assert made["run"] == str(run.path) and made["run_weights_sha256"] == "0123456789abcdef" * 4
    assert syn.simulator == store.simulator and syn.meta["task"] == store.meta["task"]  # what it imitates
    assert main(["data", "info", str(store.root), str(syn.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    real, fake = [line for line in lines if line.startswith(EMBODIMENT + " ")]
    assert real.split()[1] == store.simulator and fake.split()[1:3] == ["synthetic", f"({store.simulator})"]
    assert lines[-1] == (f"{syn.root}: synthetic, generated by run {run.path} (weights sha256 0123456789ab) "
                         f"from the episodes of {store.root}")
    # It loads like any dataset, into training windows.
    windows = WindowDataset(EpisodeStore(syn.root, verify=True), num_frames=3, frame_hz=10.0)
    assert len(windows) > 0 and windows[0]["frames"].shape[0] == 3


def test_synth_rejects_privileged_policies(run, store, tmp_path):
    with pytest.raises(ConfigError, match="needs the real simulator's state"):
        synthesize(run, EMBODIMENT, episodes=1, out=tmp_path / "x", dataset=store.root, policy="expert:0", steps=2)


def test_success_classifier_learns_the_flag(store, tmp_path):
    classifier, metrics = train_success_classifier(store, steps=60, batch_size=32, seed=0)
    assert metrics["heldout_balanced_accuracy"] > 0.85
    classifier.save(tmp_path / "clf")
    again = load_success_classifier(tmp_path / "clf")
    frames = np.asarray(store.frames[:16])
    np.testing.assert_allclose(again.predict(frames), classifier.predict(frames), atol=1e-6)
    assert 0 <= metrics["heldout_episode_balanced_accuracy"] <= 1
    assert (again.threshold, again.min_frames) == (classifier.threshold, classifier.min_frames)


def test_longest_run():
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == 3
    assert longest_run(np.zeros(5, bool)) == 0


def test_episode_rule_ignores_single_frame_false_positives():
    # Failed episodes have one spurious frame at 0.6; successful ones hold success for 3 frames.
    failed = [np.r_[np.full(10, 0.1), 0.6, np.full(10, 0.1)] for _ in range(4)]
    succeeded = [np.r_[np.full(15, 0.1), np.full(3, 0.95)] for _ in range(3)]
    threshold, min_frames, score = calibrate_episode_rule(failed + succeeded, [False] * 4 + [True] * 3)
    assert score == 1.0 and (threshold > 0.6 or min_frames > 1)
    # Nothing to tell apart: the plain rule (any frame above 0.5) stays.
    assert calibrate_episode_rule(failed, [False] * 4)[:2] == (0.5, 1)


def test_success_classifier_trains_on_reconstructions_too(run, store, monkeypatch):
    import hma.eval.success as success

    assert success.reconstruct(np.asarray(store.frames[:2]), run.tokenizer).shape == (2, IMAGE, IMAGE, 3)
    seen = []
    monkeypatch.setattr(success, "reconstruct", lambda frames, tok: seen.append(len(frames)) or 255 - np.asarray(frames))
    classifier, _ = train_success_classifier(store, steps=2, batch_size=8, tokenizer=run.tokenizer)
    assert seen == [store.num_frames] and classifier.predict(np.asarray(store.frames[:3])).shape == (3,)


def test_success_classifier_needs_both_labels(tmp_path):
    info = DatasetInfo(embodiment=EMBODIMENT, simulator="procedural", action_names=["dx", "dy"], control_hz=20.0,
                       image_size=(IMAGE, IMAGE))
    writer = StoreWriter(tmp_path / "never", info)
    writer.add_episode(np.zeros((4, IMAGE, IMAGE, 3), np.uint8), np.zeros((4, 2), np.float32), np.zeros(4, bool))
    with pytest.raises(DataError, match="expected both successes and failures"):
        train_success_classifier(writer.finalize())


def test_correlations():
    p, s = correlations([0.0, 0.5, 1.0, 0.2], [0.1, 0.4, 0.9, 0.3])
    assert p > 0.95 and s == pytest.approx(1.0)
    assert all(math.isnan(v) for v in correlations([0.5, 0.5], [0.1, 0.2]))


def test_policy_eval_reports_both_rates(run, store, tmp_path):
    report = evaluate_policies(run, EMBODIMENT, policies=["expert:0", "expert:1", "random"], episodes=3, steps=4,
                               dataset=store.root, out=tmp_path / "pe", simulator=ToySim(),
                               classifier=RuleClassifier())
    assert [r.name for r in report.results] == ["expert:0", "expert:1", "random"]
    assert report.results[0].real_rate == 1.0  # the noiseless expert always pushes the square right
    for r in report.results:
        assert len(r.real) == len(r.model) == 3
    saved = json.loads((tmp_path / "pe" / "report.json").read_text())
    assert saved["results"][0]["real_rate"] == 1.0 and "pearson" in saved
    assert iio.imread(report.plot).ndim == 3
    assert "Pearson" in report.table()
    assert report.precision.startswith("precision auto -> ") and report.precision in report.table()
    assert saved["precision"] == report.precision  # the world model's generation precision, resolved
    video = iio.imread(tmp_path / "pe" / "videos" / "expert_1.gif")  # (steps + 1, H, W, 3): simulator | world model
    assert video.shape[0] == 5 and video.shape[2] > 2 * (video.shape[1] - LABEL_HEIGHT) - 20  # under a label strip
    assert sorted(p.name for p in (tmp_path / "pe" / "videos").iterdir()) == ["expert_0.gif", "expert_1.gif", "random.gif"]


def test_parse_policy_errors(run):
    space = None
    for bad, message in (("expert:x", "expected a number"), ("bc", "names no checkpoint"), ("teleop", "is unknown")):
        with pytest.raises(ConfigError, match=message):
            parse_policy(bad, run=run, embodiment=EMBODIMENT, space=space)


def test_bc_round_trip_and_synth_bc(run, store, tmp_path):
    policy = train_bc([(store, range(4))], chunk=CHUNK, steps=20)
    frame = np.asarray(store.frames[0])
    assert policy.act(frame).shape == (CHUNK, 2)
    policy.save(tmp_path / "bc")
    np.testing.assert_allclose(load_bc_policy(tmp_path / "bc").act(frame), policy.act(frame), atol=1e-5)
    result = run_synth_bc(run, EMBODIMENT, dataset=store.root, out=tmp_path / "sbc", real_episodes=3,
                          synthetic_episodes=2, eval_episodes=2, steps=4, bc_steps=10, simulator=ToySim())
    assert set(result) >= {"real_only", "real_plus_synthetic"}
    assert 0.0 <= result["real_only"] <= 1.0 and EpisodeStore(tmp_path / "sbc" / "synthetic").num_episodes == 2
    for key in ("real_only", "real_plus_synthetic"):
        assert len(result[f"{key}_episodes"]) == 2 and result[key] == np.mean(result[f"{key}_episodes"])
    assert 0 < result["synthetic"]["sharpness_ratio"] and "synthetic_judged_success" not in result["synthetic"]


def test_random_shift_moves_each_frame_and_repeats_the_border():
    from hma.apps.bc import random_shift

    frames = torch.arange(2 * 5 * 6 * 3, dtype=torch.uint8).reshape(2, 5, 6, 3)
    assert random_shift(frames, 0, torch.Generator()) is frames
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        out = random_shift(frames, 2, gen)
        assert out.shape == frames.shape and out.dtype == torch.float32
        for b in range(2):  # some offset (dy, dx) in [-2, 2]^2 maps the clamped source onto the output
            match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                     if torch.equal(out[b], frames[b][(torch.arange(5) + dy).clamp(0, 4)][:, (torch.arange(6) + dx).clamp(0, 5)].float())]
            assert len(match) == 1
            seen.add(match[0])
    assert len(seen) > 10  # the offsets vary across frames and calls


def test_bc_with_a_feature_grid_and_shifts_round_trips(store, tmp_path):
    policy = train_bc([(store, range(4))], chunk=CHUNK, steps=5, grid=2, shift=2)
    assert policy.net.grid == 2 and policy.net.head.in_features == 4 * policy.net.width * 4
    policy.save(tmp_path / "bc")
    frame = np.asarray(store.frames[0])
    loaded = load_bc_policy(tmp_path / "bc")
    assert loaded.net.grid == 2
    np.testing.assert_allclose(loaded.act(frame), policy.act(frame), atol=1e-5)
    with pytest.raises(ConfigError, match="shift=-1 is invalid"):
        train_bc([(store, range(2))], chunk=CHUNK, steps=1, shift=-1)
    with pytest.raises(ConfigError, match="grid=0 is invalid"):
        train_bc([(store, range(2))], chunk=CHUNK, steps=1, grid=0)


def test_sharpness_falls_with_blur():
    from hma.experiments.synth_bc import sharpness

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    blurred = ((sharp[:, :-1, :-1].astype(float) + sharp[:, 1:, 1:] + sharp[:, :-1, 1:] + sharp[:, 1:, :-1]) / 4).astype(np.uint8)
    assert sharpness(blurred) < 0.6 * sharpness(sharp) and sharpness(np.full((1, 8, 8, 3), 7, np.uint8)) == 0


def test_bc_real_share_draws_that_fraction_of_each_batch_from_the_first_source(store, monkeypatch):
    import hma.apps.bc as bc

    seen = []
    original = bc.F.mse_loss
    monkeypatch.setattr(bc.F, "mse_loss", lambda pred, target: seen.append(target.detach().clone()) or original(pred, target))
    # Two sources of other episodes: a target row tells which source it came from.
    sources = [(store, [0, 1]), (store, [2, 3, 4, 5])]
    bc.train_bc(sources, chunk=CHUNK, steps=6, batch_size=8, first_share=0.75)
    real_rows = bc._samples(sources[:1], CHUNK).chunks
    data = bc._samples(sources, CHUNK).chunks
    mean, std = data.mean(0), np.maximum(data.std(0), 1e-6)
    normalized_real = {tuple(np.round((row - mean) / std, 4)) for row in real_rows}
    for batch in seen:
        from_real = sum(tuple(np.round(row.numpy(), 4)) in normalized_real for row in batch)
        assert from_real == 6  # round(0.75 * 8) real rows in every batch
    with pytest.raises(ConfigError, match="first_share=0 is invalid"):
        bc.train_bc([(store, range(2))], chunk=CHUNK, steps=1, first_share=0)


def test_policy_eval_section_goes_into_results_md_beside_experiments(tmp_path):
    from hma.apps.policy_eval import PolicyEvalReport, PolicyResult
    from hma.experiments.results import policy_eval_section, update_results_section

    md = tmp_path / "results.md"
    update_results_section(md, "actions", "## actions: table\n\n| run | x |\n|---|---|\n| a | 1 |")
    results = [PolicyResult("expert:0", [True, True], [True, False], [True, True]),
               PolicyResult("random", [False, False], [False, False], [False, False])]
    report = PolicyEvalReport("toy", 2, 5, results, pearson=0.5, spearman=0.4)
    update_results_section(md, "policy-eval", policy_eval_section(report, "hma policy-eval --run r"))
    text = md.read_text()
    assert "hma policy-eval --run r" in text
    assert "| expert:0 | 1.00 | 0.50 |" in text and "| random | 0.00 | 0.00 |" in text
    assert "Pearson 0.500, Spearman 0.400" in text
    assert text.index("hma-experiment:actions:begin") < text.index("hma-experiment:policy-eval:begin")


def test_experiment_synth_bc_cli_writes_its_results_section(run, store, tmp_path, monkeypatch):
    import hma.experiments.synth_bc as bc
    import hma.run
    from hma.cli import main

    original = hma.run.open_run
    monkeypatch.setattr(hma.run, "open_run", lambda path, device=None: run if path == "toy-run" else original(path, device))
    monkeypatch.setattr(bc, "RealSimulator", lambda embodiment, size: ToySim())
    md = tmp_path / "results.md"
    md.write_text("# Results\n\nintro kept\n")
    args = ["experiment", "synth-bc", "--run", "toy-run", "--embodiment", EMBODIMENT, "--data", str(store.root),
            "--out", str(tmp_path / "exp"), "--real-episodes", "3", "--synthetic-episodes", "2", "--eval-episodes", "2",
            "--bc-steps", "10", "--results-md", str(md), "--seed", "4", "--repeats", "2"]
    assert main(args) == 0
    results = [json.loads((tmp_path / "exp" / "synth-bc" / f"seed_{s}" / "synth_bc.json").read_text()) for s in (4, 5)]
    text = md.read_text()
    assert text.startswith("# Results\n\nintro kept\n") and text.count("hma-experiment:synth-bc:begin") == 1
    assert "| training data | episodes | seed 4 | seed 5 | mean |" in text
    for key, label in (("real_only", "real only | 3"), ("real_plus_synthetic", "real + synthetic | 3 + 2")):
        a, b = results[0][key], results[1][key]
        assert f"| {label} | {a:.2f} | {b:.2f} | {(a + b) / 2:.2f} |" in text
    assert "hma experiment synth-bc --out " in text and "--run toy-run" in text and "--synthetic-episodes 2" in text
    assert "--repeats 2" in text and "--perturb 0.1" in text  # defaults spelled out too
    assert "- the synthetic episodes: sharpness " in text and "a success classifier trained on real frames judges" in text
    assert (tmp_path / "exp" / "synth-bc" / "success_classifier" / "config.json").exists()
    assert all("synthetic_judged_success" in r["synthetic"] for r in results)
    # With --real-share the run goes into a section of its own, beside the uniform one.
    assert main(args + ["--real-share", "0.5"]) == 0
    text = md.read_text()
    assert text.count("hma-experiment:synth-bc:begin") == 1 and text.count("hma-experiment:synth-bc-real-share:begin") == 1
    assert "--real-share 0.5" in text and "real share of each batch 0.5" in text
    # A stronger BC (feature grid, random shifts) gets a section of its own too.
    assert main(args + ["--bc-grid", "2", "--bc-shift", "2"]) == 0
    text = md.read_text()
    assert text.count("hma-experiment:synth-bc-spatial:begin") == 1 and text.count("hma-experiment:synth-bc:begin") == 1
    assert "## synth-bc-spatial: BC with a feature grid and random shifts; behaviour cloning on real vs" in text
    assert "BC features pooled to 2x2, random shifts of up to 2 px" in text
    assert json.loads((tmp_path / "exp" / "synth-bc" / "seed_4" / "synth_bc.json").read_text())["bc_shift"] == 2
    assert EpisodeStore(tmp_path / "exp" / "synth-bc" / "seed_5" / "synthetic").num_episodes == 2


def test_experiment_cli_names_what_each_recipe_needs(tmp_path, capsys):
    from hma.cli import main

    with pytest.raises(SystemExit) as exit_info:  # argparse's own check: each experiment has its own options
        main(["experiment", "synth-bc", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --run, --embodiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "synth-bc", "--run", "r", "--embodiment", "e", "--out", str(tmp_path), "--steps", "2"])
    assert "unrecognized arguments: --steps 2" in capsys.readouterr().err
    assert main(["experiment", "actions", "--out", str(tmp_path), "--steps", "2"]) == 2
    assert "needs --data and --tokenizer" in capsys.readouterr().err


def test_synth_bc_section_gives_the_paired_interval_of_the_difference():
    from hma.experiments.results import synth_bc_section

    base = dict(embodiment="toy", real_episodes=10, synthetic_episodes=90, eval_episodes=20, steps=39)

    def result(seed, real, mixed):  # per-episode successes: the first N of 20 episodes succeed
        wins = lambda k: [e < k for e in range(20)]
        return {**base, "seed": seed, "real_only": real / 20, "real_plus_synthetic": mixed / 20,
                "real_only_episodes": wins(real), "real_plus_synthetic_episodes": wins(mixed)}

    close = synth_bc_section([result(0, 10, 9)], "cmd")
    assert "- no difference beyond the interval: 0.45 with synthetic episodes vs 0.50 without, difference -0.05 [" in close
    far = synth_bc_section([result(s, 2, 16) for s in range(3)], "cmd")
    assert "- synthetic episodes helped beyond the interval: 0.80 with synthetic episodes vs 0.10 without" in far
    assert "(95% bootstrap over 60 paired episodes of 3 seed(s))" in far
    diag = {"sharpness_ratio": 0.5, "synthetic_judged_success": 0.25, "real_judged_success": 0.75, "real_flagged_success": 1.0}
    worse = synth_bc_section([{**result(s, 16, 2), "bc_steps": 500, "perturb": 0.1, "real_share": 0.5,
                               "synthetic": diag} for s in range(3)], "cmd")
    assert "- synthetic episodes hurt beyond the interval" in worse
    assert worse.startswith("## synth-bc-real-share: real episodes 0.5 of every batch; behaviour cloning on real vs")
    assert close.startswith("## synth-bc: behaviour cloning on real vs real + world-model episodes")
    assert "- settings: BC steps 500, action noise 0.1, real share of each batch 0.5" in worse
    assert ("- the synthetic episodes: sharpness 0.50 of the real frames' (mean |Laplacian|); a success classifier "
            "trained on real frames judges 0.25 of them successful, and 0.75 of the real episodes (the simulator "
            "flags 1.00 of the real episodes)") in worse
    with pytest.raises(ConfigError, match="without per-episode successes"):
        synth_bc_section([base | {"real_only": 0.5, "real_plus_synthetic": 0.4}], "cmd")


def test_synth_bc_rejects_empty_counts(run, store, tmp_path):
    for key, bad in (("real_episodes", 0), ("synthetic_episodes", 0), ("eval_episodes", 0), ("bc_steps", 0),
                     ("real_share", 0), ("bc_grid", 0), ("bc_shift", -1)):
        with pytest.raises(ConfigError, match=f"{key}={bad} is invalid"):
            run_synth_bc(run, EMBODIMENT, dataset=store.root, out=tmp_path / "sbc", simulator=ToySim(), **{key: bad})
    assert not (tmp_path / "sbc").exists()  # refused before any episode was generated


LEROBOT_STANDIN = '''
import torch

CALLS = {"select_action": 0, "reset": 0, "keys": set(), "shapes": set(), "states": []}


class Config:
    input_features = {"observation.images.front": None, "observation.state": None}


class PushRight:
    """LeRobot's policy protocol: reset(), select_action(batch) -> one action per control step."""

    config = Config()

    def reset(self):
        CALLS["reset"] += 1

    def select_action(self, batch):
        CALLS["select_action"] += 1
        CALLS["keys"].update(batch)
        image = batch["observation.images.front"]
        CALLS["shapes"].add((tuple(image.shape), str(image.dtype), float(image.max()) <= 1.0))
        CALLS["states"].append(batch["observation.state"])
        return torch.tensor([[1.0, 0.0]])


def make():
    return PushRight()


def broken():
    return object()
'''


def test_lerobot_protocol_policy_runs_in_policy_eval_and_synth(run, store, tmp_path, monkeypatch):
    (tmp_path / "standin_policies.py").write_text(LEROBOT_STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import standin_policies as standin

    report = evaluate_policies(run, EMBODIMENT, policies=["standin_policies:make"], episodes=2, steps=3,
                               dataset=store.root, out=tmp_path / "pe", simulator=ToySim(), classifier=RuleClassifier())
    assert [r.name for r in report.results] == ["standin_policies:make"] and len(report.results[0].real) == 2
    # Asked once per control step: CHUNK steps per frame, in both simulators.
    assert standin.CALLS["select_action"] >= 2 * 2 * 3 * CHUNK and standin.CALLS["reset"] >= 2
    assert standin.CALLS["keys"] == {"observation.images.front", "observation.state"}
    assert standin.CALLS["shapes"] == {((1, 3, IMAGE, IMAGE), "torch.float32", True)}
    # The state: the simulator's own (the square's position) in the real simulator, then the
    # model's state head's read-out of each generated frame (the first from the real start).
    states = standin.CALLS["states"]
    assert {(tuple(s.shape), str(s.dtype)) for s in states} == {((1, 2), "torch.float32")}
    import torch

    sim = ToySim()
    sim.reset(0)  # policy-eval's episode 0 at seed 0
    torch.testing.assert_close(states[0], torch.from_numpy(sim.state())[None])
    real_calls = 2 * 3 * CHUNK
    torch.testing.assert_close(states[real_calls], states[0])  # the world model starts from the real state
    assert not torch.equal(states[-1], states[real_calls])  # then reads its own frames' states
    assert all(bool(torch.isfinite(s).all()) for s in states)

    before = standin.CALLS["select_action"]
    out = synthesize(run, EMBODIMENT, episodes=2, out=tmp_path / "syn", dataset=store.root, steps=3,
                     policy="standin_policies:make")
    actions = EpisodeStore(out.root).episode(0)["actions"]
    assert standin.CALLS["select_action"] - before == 2 * 3 * CHUNK
    high = np.asarray(store.action_stats["max"], np.float32)
    np.testing.assert_allclose(actions[:, 0], min(1.0, high[0]))  # the stand-in's push, inside the Box
    space = None
    for bad, message in (("standin_policies:nothing", "no callable 'nothing'"), ("no_such_module_x:make", "cannot be imported")):
        with pytest.raises(ConfigError, match=message):
            parse_policy(bad, run=run, embodiment=EMBODIMENT, space=space)
    with pytest.raises(ConfigError, match="expected an object with act"):
        parse_policy("standin_policies:broken", run=run, embodiment=EMBODIMENT, space=space)()


def test_correlation_intervals_resample_the_same_episodes_for_every_policy():
    from hma.apps.policy_eval import PolicyResult
    from hma.experiments.policy_ranking import correlation_intervals

    rng = np.random.default_rng(0)
    rates = (0.1, 0.4, 0.7, 0.9)
    real = [list(rng.random(40) < r) for r in rates]
    # The world model agrees with the real simulator on every episode: every resample has
    # correlation 1, so the interval is [1, 1]; flipping some episodes widens it below 1.
    same = [PolicyResult(f"p{i}", r, r, r) for i, r in enumerate(real)]
    assert correlation_intervals(same)["pearson"] == pytest.approx([1.0, 1.0])
    noisy = [PolicyResult(f"p{i}", r, list(np.logical_xor(r, rng.random(40) < 0.3)), r) for i, r in enumerate(real)]
    lo, hi = correlation_intervals(noisy)["pearson"]
    assert -1 <= lo < hi <= 1 and lo < 0.99
    constant = [PolicyResult(f"p{i}", r, [False] * 40, r) for i, r in enumerate(real)]
    assert correlation_intervals(constant) == {"pearson": None, "spearman": None}
    with pytest.raises(DataError, match="unequal episode counts"):
        correlation_intervals([PolicyResult("a", [True], [True], [True]), PolicyResult("b", [True, False], [True, False], [True])])


def test_policy_eval_target_needs_tasks_of_two_simulators_at_or_above_both_correlations():
    def task(name, simulator, pearson, spearman):
        return {"embodiment": name, "simulator": simulator, "pearson": pearson, "spearman": spearman}

    button, reach = task("button", "metaworld", 0.96, 0.91), task("reach", "gymnasium", 0.95, 0.90)
    assert task_meets_target(button) and task_meets_target(reach) and target_met([button, reach])
    lift = task("lift", "robosuite", 0.31, 0.48)
    assert target_met([button, lift, reach]) and not task_meets_target(lift)  # a third task below it is reported
    assert not target_met([button, task("push", "metaworld", 0.99, 0.99)])  # one simulator twice
    assert not target_met([button, task("reach", "gymnasium", 0.97, 0.89)])  # Spearman short
    assert not target_met([button, task("reach", "gymnasium", None, 0.95)])  # undefined (a constant side)
    assert not target_met([button, task("reach", "gymnasium", float("nan"), 0.95)])


def test_policy_eval_experiment_ranks_bc_expert_and_random_policies_per_task(run, store, tmp_path, monkeypatch):
    import hma.run
    from hma.cli import main

    original = hma.run.open_run
    monkeypatch.setattr(hma.run, "open_run", lambda path, device=None: run if path == "toy-run" else original(path, device))
    import hma.apps.policy_eval as pe

    monkeypatch.setattr(pe, "RealSimulator", lambda embodiment, size: ToySim())
    monkeypatch.setattr(pe, "get_embodiment", lambda embodiment: None)  # the toy world has no registry entry
    md = tmp_path / "docs" / "results.md"
    argv = ["experiment", "policy-ranking", "--run", "toy-run", "--embodiments", EMBODIMENT, "--data", str(store.root),
            "--episodes", "3", "--frames", "4", "--noise", "0", "1", "--bc-steps", "2", "6", "--out", str(tmp_path / "exp"),
            "--results-md", str(md), "--threads", "1", "--task-run", f"{EMBODIMENT}=toy-run"]
    assert main([*argv[:-2], "--task-run", "toy-run"]) == 2  # not EMBODIMENT=RUN: one line saying so
    assert main(argv) == 0
    result = json.loads((tmp_path / "exp" / "policy-eval" / "results.json").read_text())
    (task,) = result["tasks"]
    assert task["fine_tuned"] and "fine-tuned on the task" in md.read_text()
    assert [p["label"] for p in task["policies"]] == ["random", "expert, noise 0", "expert, noise 1", "BC, 2 steps", "BC, 6 steps"]
    assert task["policies"][1]["real"] == 1.0  # the noiseless expert always pushes the square right
    for p in task["policies"]:
        assert 0 <= p["model"] <= 1 and 0 <= p["real_by_classifier"] <= 1
    assert (tmp_path / "exp" / "policy-eval" / EMBODIMENT / "bc" / "steps_6").is_dir()
    assert task["pearson"] is None or -1 <= task["pearson"] <= 1
    assert result["targets"] == {"pearson": 0.95, "spearman": 0.9, "simulators": 2}
    assert result["met"] is False and task["met"] is task_meets_target(task)  # one task is one simulator
    text = md.read_text()
    assert "## policy-eval-robots:" in text and f"| {EMBODIMENT} | BC, 6 steps |" in text and f"- {EMBODIMENT}: Pearson " in text
    assert f"frame(s) in a row above {task['classifier']['threshold']:g}" in text  # the calibrated episode rule
    assert iio.imread(md.parent / task["plot"]).ndim == 3
    assert "hma experiment policy-ranking --out " in text and "--bc-steps 2 6" in text
    # A task the run does not know: one line naming the ones it does.
    argv[argv.index(EMBODIMENT)] = "dog"
    assert main(argv) == 2
