"""The shipped model's checks and card (hma.eval.card), on evaluation results whose answers are known."""

from __future__ import annotations

from hma.eval.card import CHECKS, checks_table, model_card, robot_checks


def _robot(*, lo: float, fraction: float, gain_lo: float, above_copy: float, unchanged: float,
           psnr: list[float], copy: list[float]) -> dict:
    interval = {"mean": lo + 0.1, "lo": lo, "hi": lo + 0.2}
    return {
        "counterfactual": {"delta_psnr": interval, "fraction_of_ceiling": fraction, "ceiling": interval,
                           "psnr_true": {"mean": 20.0}, "psnr_counterfactual": {"mean": 19.5},
                           "counterfactual_gain": {"lo": gain_lo}, "clips": 48},
        "token_accuracy": {"heldout": {"all": 0.9, "copy": 0.9 - above_copy, "above_copy": above_copy,
                                       "unchanged": unchanged, "changed": 0.3}},
        "modes": {"autoregressive": {"psnr_by_horizon": psnr, "copy_psnr_by_horizon": copy}},
    }


GOOD = _robot(lo=0.2, fraction=0.6, gain_lo=0.1, above_copy=0.02, unchanged=0.985, psnr=[30, 28], copy=[29, 27])
BAD = _robot(lo=-0.1, fraction=0.4, gain_lo=-0.1, above_copy=-0.01, unchanged=0.97, psnr=[30, 26], copy=[29, 27])


def test_each_check_passes_and_fails_on_its_own_figure():
    assert robot_checks(GOOD) == {k: True for k in CHECKS}
    assert robot_checks(BAD) == {k: False for k in CHECKS}
    no_branches = {**GOOD, "counterfactual": None}
    checks = robot_checks(no_branches)
    assert checks["delta_above_zero"] is None and checks["tokens_above_copy"] is True


def test_the_card_counts_the_robots_passing_each_check():
    result = {"per_embodiment": {"a": GOOD, "b": BAD}, "data": ["x"],
              "options": {"context": 2, "horizon": 2, "unmask_steps": 2, "temperature": 0.0, "seed": 0}}
    table, passed = checks_table(result)
    assert passed == {k: 1 for k in CHECKS} and "| **robots passing** | 1/2 |" in table
    card = model_card("hma-x", result, training={"steps": 5}, commands="hma train ...", limits=["small"])
    assert "# hma-x" in card and "0.30 [0.20, 0.40]" in card and "- small" in card
