"""``hma experiment synth-bc``: behaviour cloning on real episodes against real plus world-model
episodes, both scored in the real simulator (the paper's synthetic-data claim)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hma.apps.bc import episode_successes, train_bc
from hma.apps.experts import RealSimulator
from hma.data.store import EpisodeStore
from hma.errors import ConfigError, DataError
from hma.eval.success import SuccessClassifier
from hma.io import atomic_write_json
from hma.run import LoadedRun, RunLike


def run_synth_bc(run: RunLike, embodiment: str, *, dataset: str | Path, out: str | Path, real_episodes: int = 10,
                 synthetic_episodes: int = 90, eval_episodes: int = 20, steps: int | None = None, bc_steps: int = 500,
                 perturb: float = 0.1, real_share: float | None = None, bc_grid: int = 1, bc_shift: int = 0,
                 seed: int = 0, simulator: RealSimulator | None = None, classifier: Any = None) -> dict[str, Any]:
    """BC on ``real_episodes`` real episodes vs. those plus ``synthetic_episodes`` generated
    from them by the world model; returns (and writes to ``out/synth_bc.json``) both
    policies' success rates in the real simulator. ``real_share``: the fraction of the
    second policy's batches taken from the real episodes (None: uniform over all).
    ``bc_grid``, ``bc_shift``: both policies' CNN feature grid and random-shift augmentation
    (:func:`train_bc`'s ``grid`` and ``shift``).
    ``classifier``: a success classifier of real frames that judges the synthetic episodes
    (:func:`synthetic_diagnostics`)."""
    from hma.apps.policy_eval import default_steps
    from hma.apps.synth import synthesize

    store = EpisodeStore(dataset)
    if store.num_episodes < real_episodes:
        raise DataError(f"dataset {store.root} has {store.num_episodes} episodes, expected at least {real_episodes} real ones")
    for name, value in (("real_episodes", real_episodes), ("synthetic_episodes", synthetic_episodes),
                        ("eval_episodes", eval_episodes), ("bc_steps", bc_steps)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} is invalid, expected an integer >= 1")
    if real_share is not None and not 0 < real_share <= 1:  # before the synthetic episodes are generated
        raise ConfigError(f"real_share={real_share} is invalid, expected a number in (0, 1]")
    for name, value, least in (("bc_grid", bc_grid, 1), ("bc_shift", bc_shift, 0)):
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"{name}={value!r} is invalid, expected an integer >= {least}")
    out = Path(out)
    real = list(range(real_episodes))
    synthetic = synthesize(run, embodiment, episodes=synthetic_episodes, out=out / "synthetic", dataset=store,
                           source_episodes=real, perturb=perturb, seed=seed)
    sim = simulator or RealSimulator(embodiment, store.image_size[0])
    chunk = sim.chunk
    steps = steps or default_steps(store, chunk)
    try:
        bc = {"chunk": chunk, "steps": bc_steps, "seed": seed, "grid": bc_grid, "shift": bc_shift}
        policies = {
            "real_only": train_bc([(store, real)], name="bc-real", **bc),
            "real_plus_synthetic": train_bc([(store, real), (synthetic, range(synthetic.num_episodes))],
                                            name="bc-real+synth", first_share=real_share, **bc),
        }
        result: dict[str, Any] = {"embodiment": embodiment, "seed": seed, "real_episodes": real_episodes,
                                  "synthetic_episodes": synthetic_episodes, "eval_episodes": eval_episodes, "steps": steps,
                                  "bc_steps": bc_steps, "perturb": perturb, "real_share": real_share,
                                  "bc_grid": bc_grid, "bc_shift": bc_shift,
                                  "synthetic": synthetic_diagnostics(synthetic, store, real, chunk=chunk,
                                                                     classifier=classifier)}
        for key, policy in policies.items():
            policy.save(out / key)
            wins = episode_successes(policy, sim, episodes=eval_episodes, steps=steps)
            result[key], result[f"{key}_episodes"] = float(np.mean(wins)), wins
    finally:
        sim.close()
    atomic_write_json(out / "synth_bc.json", result)
    return result


def sharpness(frames: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey frames (N, H, W, 3): lower is blurrier."""
    g = np.asarray(frames, np.float32).mean(axis=-1)  # (N, H, W)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    return float(np.abs(lap).mean())


def synthetic_diagnostics(synthetic: EpisodeStore, real: EpisodeStore, real_episodes: Sequence[int], *, chunk: int,
                          classifier: Any = None) -> dict[str, Any]:
    """What may keep synthetic episodes from helping: their frames' sharpness against the real
    ones', and how many look successful to a classifier trained on real frames (beside the
    real episodes, judged by the same classifier and by the simulator's own flag)."""
    frames = lambda store, eps: [np.asarray(store.episode(e)["frames"][::chunk]) for e in eps]  # noqa: E731
    fake, true = frames(synthetic, range(synthetic.num_episodes)), frames(real, real_episodes)
    out: dict[str, Any] = {"sharpness_ratio": sharpness(np.concatenate(fake)) / max(sharpness(np.concatenate(true)), 1e-9)}
    if real.success is not None:
        out["real_flagged_success"] = float(np.mean([np.asarray(real.episode(e)["success"]).any() for e in real_episodes]))
    if classifier is not None:
        out["synthetic_judged_success"] = float(np.mean([classifier.episode_success(v) for v in fake]))
        out["real_judged_success"] = float(np.mean([classifier.episode_success(v) for v in true]))
    return out


def synth_bc_experiment(run: RunLike, embodiment: str, *, out: str | Path, seeds: Sequence[int], results_file: str | Path,
                        command: str, dataset: str | Path | None = None, log: Any = print,
                        **options: Any) -> list[dict[str, Any]]:
    """``hma experiment synth-bc``: :func:`run_synth_bc` once per seed into OUT/synth-bc/seed_S/
    (``dataset`` default: the run's own dataset of ``embodiment``), then the synth-bc section of
    ``results_file`` quoting ``command``. ``options`` are :func:`run_synth_bc`'s."""
    from hma.experiments.results import synth_bc_key, synth_bc_section, update_results_section
    from hma.run import open_run, run_dataset

    if not seeds:
        raise ConfigError("synth-bc needs at least one seed, expected --repeats >= 1")
    run = open_run(run)
    dataset = dataset if dataset is not None else run_dataset(run, embodiment)
    if dataset is None:
        raise ConfigError(f"the run records no dataset of {embodiment!r} on disk; pass --data with its real episodes")
    classifier = _classifier(run, embodiment, Path(out) / "synth-bc" / "success_classifier", log)
    results = []
    for seed in seeds:
        folder = Path(out) / "synth-bc" / f"seed_{seed}"
        result = run_synth_bc(run, embodiment, dataset=dataset, out=folder, seed=seed, classifier=classifier, **options)
        results.append(result)
        log(f"seed {seed}: real only {result['real_only']:.2f}, real + synthetic {result['real_plus_synthetic']:.2f} "
            f"success ({result['eval_episodes']} episodes each, {result['embodiment']}); wrote {folder}/synth_bc.json")
    key = synth_bc_key(options.get("real_share"), options.get("bc_grid", 1), options.get("bc_shift", 0))
    update_results_section(Path(results_file), key, synth_bc_section(results, command))
    return results


def _classifier(run: LoadedRun, embodiment: str, out: Path, log: Any) -> SuccessClassifier | None:
    """A success classifier trained on the run's own dataset of ``embodiment`` (shown tokenizer
    reconstructions too, as in policy evaluation); None where that dataset has no success flags."""
    from hma.eval.success import load_success_classifier, train_success_classifier
    from hma.run import run_dataset

    if (out / "config.json").exists():
        return load_success_classifier(out)
    path = run_dataset(run, embodiment)
    store = EpisodeStore(path) if path is not None else None
    if store is None or store.success is None or not np.asarray(store.success).any():
        log(f"no success classifier: the run's dataset of {embodiment} records no successes to learn from")
        return None
    classifier, metrics = train_success_classifier(store, tokenizer=run.tokenizer)
    classifier.save(out)
    log(f"success classifier trained on {store.root}: {metrics}")
    return classifier
