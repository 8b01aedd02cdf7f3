"""Policy evaluation in the learned simulator (paper sec. 5: success rates in the world
model correlate with those in the real simulator, Pearson 0.95 over 4 policies).

Each policy runs ``episodes`` times in the real simulator and in the world model from the
same initial frames. Real success is the simulator's flag; success in the world model is
judged by a :class:`~hma.eval.success.SuccessClassifier` trained on real frames with those
flags. All episodes of one policy are generated together by a
:class:`~hma.envs.WorldModelVectorEnv` (one batched generation call per frame).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hma.apps.experts import RealSimulator
from hma.apps.policy import ExpertSpec, parse_policy, policy_action, wants_state
from hma.eval.success import SuccessClassifier, train_success_classifier
from hma.data.sim.registry import get_embodiment
from hma.data.store import EpisodeStore
from hma.errors import ConfigError, DataError
from hma.eval.gifs import side_by_side_gif
from hma.io import atomic_write_json, nan_to_none
from hma.run import RunLike, open_run, run_dataset
from hma.envs.actions import chunk_shape
from hma.envs.vector_env import WorldModelVectorEnv

DEFAULT_POLICIES = ("expert:0", "expert:0.3", "expert:1", "random")
VIDEOS_DIR = "videos"  # per policy: its first episode, real simulator beside world model


@dataclass
class PolicyResult:
    name: str
    real: list[bool]  # per episode: the simulator flagged success
    model: list[bool]  # per episode: the classifier saw success in the generated video
    real_by_classifier: list[bool]  # the classifier on the real frames: its accuracy on this policy

    @property
    def real_rate(self) -> float:
        return float(np.mean(self.real))

    @property
    def model_rate(self) -> float:
        return float(np.mean(self.model))


@dataclass
class PolicyEvalReport:
    embodiment: str
    episodes: int
    steps: int
    results: list[PolicyResult]
    pearson: float
    spearman: float
    classifier: dict[str, float] = field(default_factory=dict)
    plot: str | None = None
    precision: str = ""  # what the world model generated at, e.g. "precision auto -> int8 (avx512_vnni)"

    def table(self) -> str:
        lines = [f"{'policy':<16} {'real':>6} {'model':>6} {'real(clf)':>9}"]
        for r in self.results:
            lines.append(f"{r.name:<16} {r.real_rate:>6.2f} {r.model_rate:>6.2f} {np.mean(r.real_by_classifier):>9.2f}")
        lines.append(f"Pearson {self.pearson:.3f}  Spearman {self.spearman:.3f}  "
                     f"({len(self.results)} policies x {self.episodes} episodes x {self.steps} frames, {self.embodiment})"
                     + (f"; world model at {self.precision}" if self.precision else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for r, j in zip(self.results, d["results"]):
            j.update(real_rate=r.real_rate, model_rate=r.model_rate)
        return nan_to_none(d)  # undefined correlations as null


def correlations(real: Sequence[float], model: Sequence[float]) -> tuple[float, float]:
    """Pearson and Spearman correlation; NaN when undefined (< 2 policies or a constant side)."""
    from scipy import stats

    real, model = np.asarray(real, float), np.asarray(model, float)
    if len(real) < 2 or np.ptp(real) == 0 or np.ptp(model) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(real, model)[0]), float(stats.spearmanr(real, model)[0])


def default_steps(store: EpisodeStore, chunk: int) -> int:
    """Frames per evaluation episode: the dataset's episode length at the model's frame rate."""
    steps = store.meta.get("extra", {}).get("episode_steps") or int(np.median(np.diff(store.episode_starts)))
    return max(1, int(steps) // chunk - 1)


def evaluate_policies(run: RunLike, embodiment: str, *, policies: Sequence[str] | None = None, episodes: int = 10,
                      steps: int | None = None, dataset: str | Path | None = None, out: str | Path = "policy_eval",
                      seed: int = 0, classifier: SuccessClassifier | None = None, sampling: Any = None,
                      simulator: RealSimulator | None = None, device: str | None = None) -> PolicyEvalReport:
    """Roll every policy out in both simulators; write ``report.json``, ``correlation.png`` and
    ``videos/POLICY.gif`` (first episode, real beside world model) to ``out``.

    ``simulator`` replaces the registry's simulator of ``embodiment`` (anything with
    RealSimulator's ``chunk``/``reset``/``step``/``expert_step``/``close``). ``device``: as
    :class:`hma.envs.WorldModelEnv`'s."""
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} is invalid, expected an integer >= 1")
    if simulator is None:
        get_embodiment(embodiment)  # fail before any training when there is no simulator to compare with
    loaded = open_run(run, device)
    path = dataset if dataset is not None else run_dataset(loaded, embodiment)
    if path is None:
        raise DataError(f"the run records no dataset of {embodiment!r} on disk; pass --dataset with its real episodes")
    store = EpisodeStore(path)
    out = Path(out)
    metrics: dict[str, float] = {}
    if classifier is None:
        classifier, metrics = train_success_classifier(store, seed=seed, tokenizer=loaded.tokenizer)
        classifier.save(out / "success_classifier")
    venv = WorldModelVectorEnv(loaded, embodiment, episodes, dataset=store, context_frames=1,
                               max_episode_steps=10 ** 9, sampling=sampling)
    chunk = chunk_shape(venv.single_action_space)[0]
    steps = steps or default_steps(store, chunk)
    results = []
    with simulator or RealSimulator(embodiment, store.image_size[0]) as sim:
        if sim.chunk != chunk:
            raise ConfigError(f"the simulator takes {sim.chunk} control steps per frame, the model {chunk}")
        from hma.progress import bar

        for text in bar(policies or DEFAULT_POLICIES, desc=f"policy-eval {embodiment}", unit="policy", leave=False):
            policy = parse_policy(text, run=loaded, embodiment=embodiment, space=venv.single_action_space, dataset=store)
            result, real_video, model_video = _evaluate_one(text, policy, sim, venv, classifier, episodes=episodes,
                                                            steps=steps, seed=seed)
            results.append(result)
            side_by_side_gif(real_video, {"world model": model_video}, out / VIDEOS_DIR / f"{_file_name(text)}.gif",
                             context=1, real_label="simulator")
    pearson, spearman = correlations([r.real_rate for r in results], [r.model_rate for r in results])
    report = PolicyEvalReport(embodiment, episodes, steps, results, pearson, spearman, metrics,
                              precision=str(venv.core.rollout.engine.choice))
    report.plot = str(_plot(report, out / "correlation.png"))
    atomic_write_json(out / "report.json", report.to_json())
    return report


def _file_name(policy: str) -> str:
    """A policy's text as a file name: expert:0.7 -> expert_0.7, bc:/path/ckpt -> bc_ckpt."""
    kind, _, arg = policy.partition(":")
    arg = Path(arg).name if kind == "bc" else arg
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}_{arg}" if arg else kind)


def _evaluate_one(name: str, policy, sim: RealSimulator, venv: WorldModelVectorEnv, classifier: SuccessClassifier, *,
                  episodes: int, steps: int, seed: int) -> tuple[PolicyResult, np.ndarray, np.ndarray]:
    """The policy's result, and its first episode in the real simulator and in the world model (T, H, W, 3)."""
    rng = np.random.default_rng([seed, 1])
    first_frames, first_states, real_chunks, real_frames, real_success = [], [], [], [], []
    image_policies = [policy() for _ in range(episodes)] if not isinstance(policy, ExpertSpec) else None
    for e in range(episodes):
        frame = sim.reset(seed * 100_003 + e)  # episode e starts from the same state for every policy
        first_frames.append(frame)
        first_states.append(sim.state())
        if image_policies is not None:
            image_policies[e].reset(seed=e)
        frames, chunks, success = [frame], [], False
        for _ in range(steps):
            if image_policies is None:
                step = sim.expert_step(policy.noise, rng)
            else:
                # The simulator's state, read only for a policy that takes one.
                step = sim.step(policy_action(image_policies[e], frame, sim.state() if wants_state(image_policies[e]) else None,
                                              where="the real simulator"))
            frame = step.frame
            frames.append(frame)
            chunks.append(step.chunk)
            success = success or step.success
        real_frames.append(np.stack(frames))
        real_chunks.append(np.stack(chunks))
        real_success.append(success)
    # The world model, from the same first frames, all episodes in one batch.
    obs, _ = venv.reset(seed=seed, options={"context": [{"frames": f[None], "state": s}
                                                        for f, s in zip(first_frames, first_states)]})
    rollout = venv.core.rollout
    if image_policies is not None:
        for e, p in enumerate(image_policies):
            p.reset(seed=e)
    generated = [obs]
    for t in range(steps):
        if image_policies is None:
            actions = np.stack([c[t] for c in real_chunks])  # replay the expert's chunks (it needs the true state)
        else:
            now = [None] * len(obs) if rollout.states is None else rollout.states
            actions = np.stack([policy_action(p, o, s, where="the world model") for p, o, s in zip(image_policies, obs, now)])
        obs, *_ = venv.step(actions)
        generated.append(obs)
    videos = np.stack(generated, axis=1)  # (E, steps+1, H, W, 3)
    model_success = [classifier.episode_success(v) for v in videos]
    real_by_classifier = [classifier.episode_success(v) for v in real_frames]
    return PolicyResult(name, real_success, model_success, real_by_classifier), real_frames[0], videos[0]


def _plot(report: PolicyEvalReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hma.io import save_figure_png

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    for r in report.results:
        ax.scatter(r.real_rate, r.model_rate, s=40)
        ax.annotate(r.name, (r.real_rate, r.model_rate), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("success rate, real simulator")
    ax.set_ylabel("success rate, world model")
    ax.set_title(f"{report.embodiment}: Pearson {report.pearson:.2f}, Spearman {report.spearman:.2f}", fontsize=9)
    fig.tight_layout()
    save_figure_png(fig, path)
    return path
