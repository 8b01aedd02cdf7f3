"""The world model shipped in the package: `hma eval` reproduces its card's figures, and the
default env and `hma.load()` use it with no path and no download."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest

from hma.run.pretrained import DEFAULT_RUN, PRETRAINED_DIR, shipped_runs

pytestmark = pytest.mark.skipif(DEFAULT_RUN not in shipped_runs(), reason=f"{DEFAULT_RUN} is not shipped in this tree")


def test_the_default_env_and_load_use_the_shipped_model():
    import gymnasium

    import hma
    import hma.envs  # noqa: F401 (registers hma/WorldModel-v0)

    loaded = hma.load()
    assert loaded.path == PRETRAINED_DIR / DEFAULT_RUN
    name = sorted(loaded.embodiments)[0]
    env = gymnasium.make("hma/WorldModel-v0", embodiment=name)
    obs, _ = env.reset(seed=0)
    obs2, *_ = env.step(env.action_space.sample())
    assert obs.dtype == np.uint8 and obs.shape == obs2.shape and obs.ndim == 3


@pytest.mark.slow
def test_hma_eval_reproduces_the_model_cards_figures(tmp_path):
    from hma.cli import main
    from hma.eval.card import robot_checks

    card = json.loads((PRETRAINED_DIR / DEFAULT_RUN / "card.json").read_text())
    data, out = tmp_path / "data", tmp_path / "eval"
    assert main([*shlex.split(card["eval"]["generate"]), "--out", str(data), "--no-progress"]) == 0
    assert main(["eval", "--run", DEFAULT_RUN, "--data", str(data), "--out", str(out), "--episodes",
                 str(card["eval"]["episodes"]), "--horizon", str(card["eval"]["horizon"]), "--seed",
                 str(card["eval"]["seed"]), "--precision", "fp32", "--no-progress"]) == 0  # the card's: fp32
    result = json.loads((out / "metrics.json").read_text())
    for name, figures in card["per_embodiment"].items():
        r = result["per_embodiment"][name]
        delta = r["counterfactual"]["delta_psnr"]["mean"]
        assert figures["delta_psnr"]["lo"] <= delta <= figures["delta_psnr"]["hi"], name
        assert r["token_accuracy"]["heldout"]["all"] == pytest.approx(figures["token_accuracy"]["all"], abs=0.01), name
        assert robot_checks(r)["unchanged_98"] == figures["checks"]["unchanged_98"], name
