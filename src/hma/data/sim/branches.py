"""Counterfactual branches: the same start, other actions, the real simulator's frames.

A world model that follows its actions must predict what the simulator does under actions
the data never took. For every held-out episode, :func:`generate_branches` puts the
simulator back into the exact state of several of its steps (a replay of the recorded
prefix from the episode's own seed) and rolls out other action sequences from there,
rendered exactly as the episode was. Evaluation compares the model's prediction under
those actions with these frames (:mod:`hma.eval.counterfactual`).

Branches live beside their dataset as a native store, ``<dataset>/counterfactual/``
(one store episode per branch). Its metadata lists, per branch, the parent episode, the
control step it starts at and the policy that drove it. Row 0 of a branch is the
parent's frame at that step; its actions differ from the parent's from row 0 on.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from hma.data.sim.base import SimEnv
from hma.data.sim.registry import FRAME_HZ, SimEmbodiment
from hma.data.sim.rollout import BehaviourMix
from hma.data.store import METADATA_FILE, DatasetInfo, EpisodeStore, StoreWriter
from hma.data.windows import HOLDOUT, split_episodes
from hma.errors import ConfigError, DataError

BRANCHES_DIR = "counterfactual"


class BranchPolicy(str, Enum):
    """What drives a branch."""

    RANDOM = "random"    # i.i.d. rows of the training episodes' actions: the eval's random draws
    EXPLORE = "explore"  # smooth random exploration, as the data's random segments
    EXPERT = "expert"    # the scripted expert with Gaussian noise


@dataclass(frozen=True)
class BranchPlan:
    """Where branches start and what drives them.

    Branch points are 10 Hz frames: the first at ``first_frame`` (so earlier frames can
    serve as context), then every ``every_frames``, as long as at least ``min_future_frames``
    frames follow. Each point gets one branch per entry of ``policies``; a branch runs to
    the end of its parent episode.
    """

    policies: tuple[BranchPolicy, ...] = (BranchPolicy.RANDOM, BranchPolicy.EXPLORE, BranchPolicy.EXPERT)
    first_frame: int = 1
    every_frames: int = 2
    min_future_frames: int = 8
    holdout: float = HOLDOUT      # which episodes are held out: hma.data.windows.split_episodes
    expert_noise: float = 0.1     # Gaussian noise std of the expert branches, fraction of half the action range
    max_episodes: int | None = None  # branch only the first this many held-out episodes (None: all of them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(BranchPolicy(p) for p in self.policies))
        if self.first_frame < 0 or self.every_frames < 1 or self.min_future_frames < 1:
            raise ConfigError(f"branch plan {self} is invalid; expected first_frame >= 0, every_frames >= 1 and "
                              "min_future_frames >= 1")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ConfigError(f"branch plan max_episodes {self.max_episodes} is invalid; expected a positive number "
                              "of held-out episodes, or None for all of them")

    def points(self, episode_steps: int, stride: int) -> list[int]:
        """Control steps at which an episode of ``episode_steps`` steps branches."""
        frames = episode_steps // stride
        last = frames - 1 - self.min_future_frames
        return [f * stride for f in range(self.first_frame, last + 1, self.every_frames)]

    def describe(self) -> dict[str, Any]:
        out = {**asdict(self), "policies": [p.value for p in self.policies]}
        if self.max_episodes is None:  # uncapped plans keep the metadata they always had
            del out["max_episodes"]
        return out


@dataclass(frozen=True)
class Branch:
    """One branch: episode ``episode`` of the parent, from control step ``step``, driven by ``policy``."""

    episode: int
    step: int
    policy: BranchPolicy
    draw: int  # index among this (episode, step)'s branches: seeds its own actions


def episode_rng(seed: int, name: str, episode: int) -> np.random.Generator:
    """Episode ``episode`` depends only on (seed, embodiment, episode): a resumed run
    regenerates exactly what an uninterrupted one would have, and a branch can replay it."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), episode])


def replay_to(env: SimEnv, spec: SimEmbodiment, *, seed: int, episode: int, actions: np.ndarray, step: int) -> None:
    """Put ``env`` into the state episode ``episode`` was in at ``step``: reset from its seed, replay its actions."""
    env.reset(episode_rng(seed, spec.name, episode))
    for action in actions[:step]:
        env.step(action)


def branch_actions(env: SimEnv, branch: Branch, *, steps: int, train_actions: np.ndarray, seed: int,
                   spec: SimEmbodiment, plan: BranchPlan, mix: BehaviourMix = BehaviourMix()):
    """Roll ``env`` (already at the branch point) ``steps`` steps; yields (frame, action, success) per row."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), branch.episode, branch.step, branch.draw, 1])
    low, high = env.action_low, env.action_high
    decay = float(np.exp(-1.0 / (mix.smoothing_seconds * spec.control_hz)))
    z = rng.uniform(-1.0, 1.0, len(low))
    noise = plan.expert_noise * (high - low) / 2
    for _ in range(steps):
        if branch.policy is BranchPolicy.RANDOM:
            action = train_actions[rng.integers(len(train_actions))]
        elif branch.policy is BranchPolicy.EXPLORE:
            z = decay * z + np.sqrt(1 - decay**2) * rng.standard_normal(len(low))
            action = env.explore(np.tanh(z))
        else:
            action = env.expert() + noise * rng.standard_normal(len(low))
        action = np.clip(action, low, high).astype(np.float32)
        yield env.frame(), action, env.success()
        env.step(action)


def plan_branches(store: EpisodeStore, spec: SimEmbodiment, plan: BranchPlan) -> list[Branch]:
    """Every branch of ``store``'s held-out episodes, in the order they are written."""
    _, held = split_episodes(store.num_episodes, plan.holdout)
    out = []
    for e in held[:plan.max_episodes]:
        for step in plan.points(store.episode_length(e), spec.stride):
            out += [Branch(e, step, policy, draw) for draw, policy in enumerate(plan.policies)]
    return out


def generate_branches(spec: SimEmbodiment, dataset: str | Path, *, plan: BranchPlan = BranchPlan(),
                      overwrite: bool = False) -> Path | None:
    """Write (or resume, or skip if finished) ``dataset/counterfactual/``; None when no episode can branch."""
    dataset = Path(dataset)
    store = EpisodeStore(dataset)
    if store.embodiment != spec.name:
        raise DataError(f"{dataset} holds {store.embodiment!r}, expected {spec.name!r}")
    seed = store.meta.get("extra", {}).get("seed")
    if not isinstance(seed, int):
        raise DataError(f"{dataset}: metadata has no integer extra.seed; branches replay episodes from their seed, "
                        "so only datasets written by `hma data generate` can branch")
    out = dataset / BRANCHES_DIR
    if (out / METADATA_FILE).exists() and not overwrite:
        return out
    branches = plan_branches(store, spec, plan)
    if not branches:
        return None
    train_ids, _ = split_episodes(store.num_episodes, plan.holdout)
    train_actions = np.concatenate([store.episode(e)["actions"] for e in train_ids])
    info = DatasetInfo(
        embodiment=store.embodiment, simulator=store.simulator, action_names=store.action_names,
        control_hz=store.control_hz, image_size=store.image_size, task=spec.instruction,
        extra={"sim_task": spec.task, "suggested_frame_hz": FRAME_HZ, "generator": "hma.data.sim.branches",
               "seed": seed, "parent_episodes": store.num_episodes, "plan": plan.describe(),
               "branches": [{"episode": b.episode, "step": b.step, "policy": b.policy.value, "draw": b.draw}
                            for b in branches]},
    )
    writer = StoreWriter(out, info, overwrite=overwrite)
    start = writer.num_staged
    if start < len(branches):
        from hma.progress import bar

        env = spec.make(store.image_size[0])
        try:
            for b in bar(branches[start:], desc=f"{spec.name} branches", unit="branch", leave=False):
                recorded = store.episode(b.episode)["actions"]
                replay_to(env, spec, seed=seed, episode=b.episode, actions=recorded, step=b.step)
                rows = list(branch_actions(env, b, steps=len(recorded) - b.step, train_actions=train_actions,
                                           seed=seed, spec=spec, plan=plan))
                frames, actions, success = (np.stack(x) for x in zip(*rows))
                writer.add_episode(frames, actions, None if any(s is None for s in success) else success.astype(bool))
        finally:
            env.close()
    writer.finalize()
    return out


def open_branches(dataset: str | Path) -> tuple[EpisodeStore, list[Branch]] | None:
    """The counterfactual store of ``dataset`` and its branch list, or None when it has none."""
    root = Path(dataset) / BRANCHES_DIR
    if not (root / METADATA_FILE).exists():
        return None
    store = EpisodeStore(root)
    listed = store.meta.get("extra", {}).get("branches")
    if not isinstance(listed, list) or len(listed) != store.num_episodes:
        raise DataError(f"{root}: metadata lists {len(listed) if isinstance(listed, list) else 'no'} branches for "
                        f"{store.num_episodes} stored episodes, expected one entry per episode")
    try:
        branches = [Branch(int(b["episode"]), int(b["step"]), BranchPolicy(b["policy"]), int(b["draw"]))
                    for b in listed]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{root}: a branch entry is malformed ({err}); expected episode, step, policy and draw") from None
    return store, branches
