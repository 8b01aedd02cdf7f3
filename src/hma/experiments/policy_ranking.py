"""``hma experiment policy-ranking``: does the multi-robot world model rank policies as the real
simulators do, task by task? (paper sec. 5: Pearson 0.95 between success in the learned and in
the real simulator.)

For each task (an embodiment with a simulator and success flags in its data) the policies
span clearly different qualities, as the paper's do: behaviour-cloning policies trained for
several numbers of steps on the run's own training episodes of that task (the same seed and
a constant learning rate, so a shorter one is the longer one's checkpoint at that step), the
scripted expert at several noise levels, and random actions. Each runs in the real simulator
and in the world model from the same starts (:func:`hma.apps.policy_eval.evaluate_policies`).
The correlations get a bootstrap interval over episodes: episode e starts from the same state
for every policy, so one resample draws the same episodes for all of them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hma.apps.policy_eval import PolicyResult, correlations, evaluate_policies
from hma.errors import ConfigError, DataError
from hma.io import atomic_write_json, nan_to_none
from hma.run import RunLike

DEFAULT_NOISES = (0.0, 0.5, 1.0, 1.5)
DEFAULT_BC_STEPS = (30, 300, 1500)
PEARSON_TARGET, SPEARMAN_TARGET = 0.95, 0.9
# The claim holds across robots when tasks of this many different simulators meet the target.
SIMULATORS_TARGET = 2
RESULTS_FILE = "results.json"


def correlation_intervals(results: Sequence[PolicyResult], *, resamples: int = 2000, confidence: float = 0.95,
                          seed: int = 0) -> dict[str, list[float] | None]:
    """95% bootstrap intervals of Pearson and Spearman over episodes (resampled with replacement,
    the same draw for every policy). None where fewer than half of the resamples define them
    (a side constant across policies)."""
    if len({len(r.real) for r in results} | {len(r.model) for r in results}) != 1:
        raise DataError("policy results of unequal episode counts, expected the same episodes for every policy")
    real = np.asarray([r.real for r in results], dtype=np.float64)  # (P, E)
    model = np.asarray([r.model for r in results], dtype=np.float64)  # (P, E)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"pearson": [], "spearman": []}
    for _ in range(resamples):
        idx = rng.integers(0, real.shape[1], real.shape[1])
        p, s = correlations(real[:, idx].mean(axis=1), model[:, idx].mean(axis=1))
        if not np.isnan(p):
            draws["pearson"].append(p)
            draws["spearman"].append(s)
    tail = (1 - confidence) / 2 * 100
    return {k: (None if len(v) < resamples / 2 else [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))])
            for k, v in draws.items()}


def policy_eval_experiment(run: RunLike, embodiments: Sequence[str], *, out: str | Path, results_file: str | Path,
                           command: str, episodes: int = 20, steps: int | None = None,
                           noises: Sequence[float] = DEFAULT_NOISES, bc_steps: Sequence[int] = DEFAULT_BC_STEPS,
                           seed: int = 0, device: str | None = None, data: Sequence[str | Path] | None = None,
                           task_runs: dict[str, Any] | None = None,
                           simulator: Callable[[str], Any] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every task's policies in both simulators; writes OUT/policy-eval/{TASK/, results.json}, a
    correlation plot per task into the assets folder beside ``results_file``, and its section.
    ``data``: dataset folders holding the tasks' real episodes (default: the run's own);
    ``task_runs``: embodiment -> a run of ``run`` fine-tuned on that task, used for it instead;
    ``simulator(embodiment)`` replaces the registry's real simulators (tests)."""
    from hma.apps.bc import train_bc
    from hma.data.store import EpisodeStore, find_datasets
    from hma.data.windows import split_episodes
    from hma.experiments.results import policy_ranking_section, results_date, update_results_section
    from hma.run import open_run, run_dataset

    if not embodiments:
        raise ConfigError("experiment 'policy-ranking' needs at least one task, expected --embodiments NAME [NAME ...]")
    if any(n < 1 for n in bc_steps) or any(x < 0 for x in noises):
        raise ConfigError(f"--bc-steps {list(bc_steps)} / --noise {list(noises)} are invalid, expected steps >= 1 and noise >= 0")
    task_runs = dict(task_runs or {})
    stray = sorted(set(task_runs) - set(embodiments))
    if stray:
        raise ConfigError(f"--task-run names {', '.join(stray)}, which is not among --embodiments {' '.join(embodiments)}")
    shared = open_run(run, device)
    unknown = [e for e in embodiments if e not in shared.embodiments]
    if unknown:
        raise ConfigError(f"the run knows no embodiment {', '.join(map(repr, unknown))}, expected some of "
                          f"{', '.join(sorted(shared.embodiments))}")
    given = {EpisodeStore(d).embodiment: d for d in find_datasets(data)} if data else {}
    folder = Path(out) / "policy-eval"
    assets = Path(results_file).parent / "assets"
    tasks = []
    for embodiment in embodiments:
        loaded = open_run(task_runs[embodiment], device) if embodiment in task_runs else shared
        if embodiment not in loaded.embodiments:
            raise ConfigError(f"--task-run {embodiment}={task_runs[embodiment]} does not know {embodiment!r}")
        path = given.get(embodiment) or run_dataset(loaded, embodiment)
        if path is None:
            raise DataError(f"no dataset of {embodiment!r} in --data or among the run's, expected its real episodes")
        store = EpisodeStore(path)
        train_ids, _ = split_episodes(store.num_episodes, loaded.holdout)
        chunk = loaded.embodiments[embodiment].chunk
        labels = {"random": "random", **{f"expert:{x:g}": f"expert, noise {x:g}" for x in noises}}
        for n in sorted(bc_steps):
            policy = train_bc([(store, train_ids)], chunk=chunk, steps=n, seed=seed, name=f"bc-{n}")
            checkpoint = folder / embodiment / "bc" / f"steps_{n}"
            policy.save(checkpoint)
            labels[f"bc:{checkpoint}"] = f"BC, {n} steps"
        report = evaluate_policies(loaded, embodiment, policies=list(labels), episodes=episodes, steps=steps,
                                   dataset=store.root, out=folder / embodiment, seed=seed,
                                   simulator=simulator(embodiment) if simulator else None)
        intervals = correlation_intervals(report.results, seed=seed)
        plot = assets / f"policy-eval-{embodiment}.png"
        plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report.plot, plot)
        task = {"embodiment": embodiment, "simulator": store.meta.get("simulator") or embodiment,
                "run": str(loaded.path),
                "fine_tuned": embodiment in task_runs, "episodes": report.episodes, "steps": report.steps,
                "training_episodes": len(train_ids), "pearson": report.pearson, "spearman": report.spearman,
                "pearson_interval": intervals["pearson"], "spearman_interval": intervals["spearman"],
                "classifier": report.classifier, "plot": f"assets/{plot.name}",
                "policies": [{"label": labels[r.name], "policy": r.name, "real": r.real_rate, "model": r.model_rate,
                              "real_by_classifier": float(np.mean(r.real_by_classifier))} for r in report.results]}
        task["met"] = task_meets_target(task)
        tasks.append(task)
        log(f"{embodiment}: Pearson {report.pearson:.3f}, Spearman {report.spearman:.3f} over {len(report.results)} policies")
    result = {"experiment": "policy-eval", "command": command, "date": results_date(), "run": str(shared.path),
              "seed": seed, "tasks": tasks, "met": target_met(tasks),
              "targets": {"pearson": PEARSON_TARGET, "spearman": SPEARMAN_TARGET, "simulators": SIMULATORS_TARGET}}
    atomic_write_json(folder / RESULTS_FILE, nan_to_none(result))  # NaN: a side constant across policies
    update_results_section(Path(results_file), "policy-eval-robots", policy_ranking_section(result))
    return result


def task_meets_target(task: dict[str, Any]) -> bool:
    """Both correlations of one task at or above the targets (an undefined one is not)."""
    pearson, spearman = task["pearson"], task["spearman"]
    return bool(pearson is not None and spearman is not None and not np.isnan(pearson) and not np.isnan(spearman)
                and pearson >= PEARSON_TARGET and spearman >= SPEARMAN_TARGET)


def target_met(tasks: Sequence[dict[str, Any]]) -> bool:
    """The target holds when tasks of at least ``SIMULATORS_TARGET`` different simulators meet
    it; a task below it, besides those, is reported but does not undo it."""
    return len({t["simulator"] for t in tasks if task_meets_target(t)}) >= SIMULATORS_TARGET
