"""Named dataset suites and the generator behind ``hma data generate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hma.data.sim.branches import BranchPlan, episode_rng, generate_branches
from hma.data.sim.registry import FRAME_HZ, SimEmbodiment, get_embodiment
from hma.data.sim.rollout import BehaviourMix, rollout
from hma import progress
from hma.data.store import METADATA_FILE, DatasetInfo, StoreWriter
from hma.errors import ConfigError, EmbodimentError


@dataclass(frozen=True)
class Suite:
    """Which embodiments, how many episodes each, and an optional cap on episode length."""

    name: str
    embodiments: tuple[str, ...]
    episodes: int
    max_episode_seconds: float | None = None

    def episode_steps(self, spec: SimEmbodiment) -> int:
        seconds = spec.episode_seconds if self.max_episode_seconds is None else min(spec.episode_seconds, self.max_episode_seconds)
        return round(seconds * spec.control_hz)


SUITES: dict[str, Suite] = {
    # Under two minutes on a shared 2-core machine (1m39s measured), yet 4 simulators,
    # action dims 2/4/6/7 and rates 10/20 Hz; 2.4 s episodes hold 24 frames at 10 Hz.
    "tiny": Suite("tiny", ("robosuite_lift_panda", "metaworld_push_sawyer", "gym_reacher", "gym_halfcheetah", "pusht"),
                  episodes=8, max_episode_seconds=2.4),
    # Cheap simulators first: robosuite steps cost ~10x more, so the other datasets are
    # ready long before the arms are (the run resumes where it stopped anyway).
    "default": Suite("default", (
        "gym_reacher", "gym_pusher", "gym_halfcheetah", "pusht", "metaworld_push_sawyer",
        "metaworld_button_press_sawyer", "robosuite_lift_panda", "robosuite_lift_sawyer", "robosuite_lift_iiwa",
        "robosuite_lift_ur5e", "robosuite_lift_jaco", "robosuite_lift_kinova3",
    ), episodes=40),
    # Whole episodes (5-10 s: 50-100 frames at 10 Hz) of the cheap simulators, for rollouts of
    # 10x a 4-frame window (`hma experiment long-horizon`).
    "long": Suite("long", ("gym_halfcheetah", "gym_pusher", "pusht", "metaworld_push_sawyer"), episodes=20),
}


def demonstrations(noise: float) -> BehaviourMix:
    """Expert-only episodes (demonstrations, as behaviour cloning takes them): every segment
    follows the scripted expert with Gaussian noise of std ``noise`` x half the action range."""
    if not 0 <= noise <= 1:
        raise ConfigError(f"demonstration noise {noise} is invalid, expected a number in [0, 1]")
    return BehaviourMix(expert_fraction=(1.0, 1.0), expert_noise=(noise, noise))


def coverage() -> BehaviourMix:
    """The default mix widened to the actions of the policies a world model is asked to rank:
    expert noise up to 1.5 x half the action range and half of the random segments i.i.d.
    uniform (a random policy's jitter), besides the smooth exploration. A model trained only
    on smooth, lightly noised actions has never seen those and falls back on its prior."""
    return BehaviourMix(expert_noise=(0.02, 1.5), jitter_fraction=0.5)


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; expected one of: {', '.join(SUITES)}") from None


def dataset_info(spec: SimEmbodiment, *, image_size: int, seed: int, episode_steps: int,
                 mix: BehaviourMix = BehaviourMix(), state_names: Sequence[str] = ()) -> DatasetInfo:
    return DatasetInfo(
        embodiment=spec.name, simulator=spec.simulator, action_names=list(spec.action_names),
        control_hz=float(spec.control_hz), image_size=(image_size, image_size), task=spec.task,
        state_names=list(state_names),
        extra={
            "suggested_frame_hz": FRAME_HZ,
            "generator": "hma.data.sim",
            "seed": seed,
            "episode_steps": episode_steps,
            "expert": spec.expert,
            "behaviour": mix.describe(),
        },
    )


def generate_dataset(spec: SimEmbodiment, out: str | Path, *, episodes: int, episode_steps: int,
                     image_size: int = 64, seed: int = 0, overwrite: bool = False,
                     branches: BranchPlan | None = BranchPlan(), mix: BehaviourMix = BehaviourMix()) -> Path:
    """Write (or resume, or skip if finished) one embodiment's dataset folder, then its
    counterfactual branches (:mod:`hma.data.sim.branches`) unless ``branches`` is None.
    ``mix``: how each episode's actions are chosen (:func:`demonstrations` for expert-only ones)."""
    out = Path(out)
    if (out / METADATA_FILE).exists() and not overwrite:
        progress.write(f"{spec.name}: {out} is complete, skipping (--overwrite replaces it)")
    else:
        _generate_episodes(spec, out, episodes=episodes, episode_steps=episode_steps, image_size=image_size,
                           seed=seed, overwrite=overwrite, mix=mix)
    if branches is not None:
        generate_branches(spec, out, plan=branches, overwrite=overwrite)
    return out


def _generate_episodes(spec: SimEmbodiment, out: Path, *, episodes: int, episode_steps: int, image_size: int,
                       seed: int, overwrite: bool, mix: BehaviourMix) -> None:
    env = spec.make(image_size)
    try:
        info = dataset_info(spec, image_size=image_size, seed=seed, episode_steps=episode_steps,
                            mix=mix, state_names=env.state_names)
        writer = StoreWriter(out, info, overwrite=overwrite)
        start = writer.num_staged
        with progress.bar(total=episodes, initial=start, desc=spec.name, unit="ep", leave=True) as bar:
            for e in range(start, episodes):
                ep = rollout(env, episode_steps, spec.control_hz, episode_rng(seed, spec.name, e), mix)
                writer.add_episode(ep.frames, ep.actions, ep.success, state=ep.state, reward=ep.reward)
                bar.update(1)
    finally:
        env.close()
    writer.finalize()


def generate_suite(suite: str, out: str | Path, *, episodes: int | None = None, image_size: int = 64,
                   seed: int = 0, embodiments: Sequence[str] | None = None, overwrite: bool = False,
                   branches: BranchPlan | None = BranchPlan(), mix: BehaviourMix = BehaviourMix()) -> list[Path]:
    """Generate every dataset of ``suite`` under ``out`` (one folder per embodiment)."""
    s = get_suite(suite)
    names = list(s.embodiments)
    if embodiments:
        for name in embodiments:
            get_embodiment(name)
            if name not in s.embodiments:
                raise EmbodimentError(f"embodiment {name!r} is not in suite {suite!r}; expected one of: {', '.join(s.embodiments)}")
        names = [n for n in names if n in embodiments]
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes {episodes} is invalid; expected a positive number")
    if image_size < 8:
        raise ConfigError(f"--image-size {image_size} is too small; expected at least 8 pixels")
    paths = []
    for name in names:
        spec = get_embodiment(name)
        paths.append(generate_dataset(
            spec, Path(out) / name, episodes=episodes or s.episodes, episode_steps=s.episode_steps(spec),
            image_size=image_size, seed=seed, overwrite=overwrite, branches=branches, mix=mix,
        ))
    return paths
