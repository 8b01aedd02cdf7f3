"""The checks a shipped world model is held to, and its model card, from an ``hma eval`` result.

Per robot, against the simulator's counterfactual branches and on held-out episodes:

- ``delta_above_zero``: the 95% interval of ΔPSNR (true minus other actions) lies above 0;
- ``half_of_ceiling``: ΔPSNR is at least half of what a perfect model scores through this tokenizer;
- ``follows``: the prediction under the other actions matches the simulator's other future
  (:func:`hma.eval.counterfactual.follows_other_actions`);
- ``tokens_above_copy``: next-frame tokens right more often than copying the last frame;
- ``unchanged_98``: at least 98% of the tokens that stay as they were predicted to stay;
- ``psnr_above_copy``: autoregressive PSNR above copy-last-frame's at every horizon step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hma.eval.counterfactual import follows_other_actions

CHECKS = {
    "delta_above_zero": "ΔPSNR interval above 0",
    "half_of_ceiling": "ΔPSNR ≥ 50% of the ceiling",
    "follows": "follows the other actions",
    "tokens_above_copy": "next-frame tokens above copying",
    "unchanged_98": "unchanged tokens ≥ 0.98 right",
    "psnr_above_copy": "PSNR above copy at every horizon step",
}


def robot_checks(r: Mapping[str, Any]) -> dict[str, bool | None]:
    """The checks of one robot's ``per_embodiment`` entry (None where its evaluation lacks the figure)."""
    cf = r.get("counterfactual")
    acc = (r.get("token_accuracy") or {}).get("heldout") or {}
    mode = r["modes"].get("autoregressive")
    return {
        "delta_above_zero": None if cf is None else cf["delta_psnr"]["lo"] > 0,
        "half_of_ceiling": None if cf is None or cf["fraction_of_ceiling"] is None else cf["fraction_of_ceiling"] >= 0.5,
        "follows": None if cf is None else follows_other_actions(cf),
        "tokens_above_copy": None if acc.get("above_copy") is None else acc["above_copy"] > 0,
        "unchanged_98": None if acc.get("unchanged") is None else acc["unchanged"] >= 0.98,
        "psnr_above_copy": None if mode is None else all(
            p > c for p, c in zip(mode["psnr_by_horizon"], mode["copy_psnr_by_horizon"])),
    }


def checks_table(result: Mapping[str, Any]) -> tuple[str, dict[str, int]]:
    """A markdown table of every robot's checks and how many robots pass each."""
    from hma.eval.report import markdown_table

    per = {name: robot_checks(r) for name, r in result["per_embodiment"].items()}
    passed = {k: sum(bool(c[k]) for c in per.values()) for k in CHECKS}
    rows = [[name, *("–" if c[k] is None else "yes" if c[k] else "no" for k in CHECKS)] for name, c in per.items()]
    rows.append(["**robots passing**", *(f"{passed[k]}/{len(per)}" for k in CHECKS)])
    return markdown_table(["robot", *CHECKS.values()], rows), passed


def _interval(s: Mapping[str, float]) -> str:
    return f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"


def figures_table(result: Mapping[str, Any]) -> str:
    """Per robot: ΔPSNR against the branches with its interval, the ceiling's fraction, next-frame
    token accuracy beside copying, and autoregressive PSNR at the last step beside copying."""
    from hma.eval.report import format_value, markdown_table

    rows = []
    for name, r in result["per_embodiment"].items():
        cf = r.get("counterfactual") or {}
        acc = (r.get("token_accuracy") or {}).get("heldout") or {}
        mode = r["modes"].get("autoregressive") or {}
        rows.append([name, _interval(cf["delta_psnr"]) if cf else "–", format_value(cf.get("fraction_of_ceiling"), "{:.2f}"),
                     format_value(acc.get("all"), "{:.3f}"), format_value(acc.get("copy"), "{:.3f}"),
                     format_value(acc.get("unchanged"), "{:.3f}"), format_value(acc.get("changed"), "{:.3f}"),
                     format_value((mode.get("psnr_by_horizon") or [None])[-1], "{:.2f}"),
                     format_value((mode.get("copy_psnr_by_horizon") or [None])[-1], "{:.2f}"),
                     str(cf.get("clips", "–"))])
    header = ["robot", "ΔPSNR vs simulator (dB) [95%]", "fraction of ceiling", "next-frame tokens right", "copy",
              "unchanged", "changed", "PSNR, last step (dB)", "copy, last step (dB)", "branch clips"]
    return markdown_table(header, rows)


def model_card(name: str, result: Mapping[str, Any], *, training: Mapping[str, Any], commands: str,
               limits: list[str]) -> str:
    """MODEL_CARD.md of shipped run ``name``: what it was trained on and how, its figures and its checks."""
    table, passed = checks_table(result)
    n = len(result["per_embodiment"])
    o = result["options"]
    return "\n".join([
        f"# {name}\n",
        f"An hma world model (MaskGIT over FSQ tokens) of {n} simulated robots: "
        f"{', '.join(result['per_embodiment'])}. Load it with `hma.load(\"{name}\")`, drive it with "
        f"`hma play --embodiment NAME` or `gymnasium.make(\"hma/WorldModel-v0\", embodiment=NAME)`.\n",
        "## Training\n",
        "\n".join(f"- {k}: {v}" for k, v in training.items()) + "\n",
        "Commands:\n",
        f"```\n{commands.strip()}\n```\n",
        "## Figures\n",
        f"`hma eval` on held-out episodes the model never saw (`{' '.join(map(str, result['data']))}`), "
        f"{o['context']} context + {o['horizon']} generated frames, {o['unmask_steps']} unmasking steps, "
        f"temperature {o['temperature']:g}, seed {o['seed']}; intervals are 95% bootstrap intervals over clips.\n",
        figures_table(result),
        "\n## Checks\n",
        table,
        f"\nPassed by at least 4 of {n} robots: "
        + (", ".join(CHECKS[k] for k, v in passed.items() if v >= min(4, n)) or "none") + ".\n",
        "## Limits\n",
        "\n".join(f"- {line}" for line in limits) + "\n",
    ])
