"""The world model as a gymnasium environment (paper: "a video simulator driven by low-level actions").

``reset`` puts context frames into the model; each ``step`` takes one action chunk and
returns the next generated frame. The reward is 0 unless a success classifier is given
(``success=``, e.g. the one ``hma policy-eval`` saves in OUT/success_classifier): then it is
1 on frames the classifier judges a success (the last ``min_frames`` frames above its
threshold, its calibrated episode rule), and ``info["success"]`` says so. Episodes never
terminate and are truncated after ``max_episode_steps`` (by the env itself, or by
gymnasium's TimeLimit when made with ``gymnasium.make``). The action space is a Box of
shape (chunk, action_dim), or (action_dim,) for a robot with one control step per frame
(:mod:`hma.envs.actions`). Out-of-range actions are clipped to the dataset's range by
default (``out_of_range="raise"`` rejects them); integer actions are cast to float; wrong
shapes, other dtypes and NaN/inf always raise :class:`hma.errors.EmbodimentError`. A reset
context that is not this robot's (frames of another image size, a dataset of another
embodiment) or holds NaN/inf raises :class:`hma.errors.DataError`.

Observations are the generated frame (``obs_type="pixels"``, default) or, as LeRobot's
simulated envs give them (gym-pusht's ``pixels_agent_pos``), a dict ``{"pixels": frame,
"agent_pos": state}``: the proprioceptive state read out of each generated frame by the
model's state head (the recorded state for a context frame), for runs trained on data that
records a state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from hma.data.store import EpisodeStore
from hma.errors import ConfigError
from hma.sampling.mar import MARSampling
from hma.sampling.maskgit import MaskGITSampling
from hma.envs.actions import OutOfRange, action_box, check_action
from hma.envs.context import Context, check_context, parse_context
from hma.run import RunLike, open_run, run_dataset
from hma.run.pretrained import DEFAULT_RUN
from hma.envs.rollout import WorldModelRollout

class SuccessJudge(Protocol):
    """What the env asks of a success classifier (:class:`hma.eval.success.SuccessClassifier`):
    a frame is a success once ``min_frames`` frames in a row scored above ``threshold``."""

    embodiment: str
    threshold: float
    min_frames: int

    def predict(self, frames: np.ndarray) -> np.ndarray: ...  # (N, H, W, 3) uint8 -> (N,) probabilities

# Without a dataset the Box spans mean +- this many standard deviations of the training actions.
_BOUND_STDS = 3.0
OBS_TYPES = ("pixels", "pixels_agent_pos")


class SimCore:
    """What the single and the vector env share: the rollout, the spaces, the clock."""

    def __init__(self, run: RunLike, embodiment: str, *, dataset: str | Path | EpisodeStore | None, context_frames: int | None,
                 max_episode_steps: int | None, sampling: MaskGITSampling | MARSampling | None,
                 out_of_range: str, device: str | torch.device | None = None,
                 success: SuccessJudge | str | Path | None = None,
                 precision: str = "auto", obs_type: str = "pixels") -> None:
        if obs_type not in OBS_TYPES:
            raise ConfigError(f"obs_type {obs_type!r} is unknown, expected one of: {', '.join(OBS_TYPES)}")
        self.obs_type = obs_type
        self.loaded = open_run(run, device)
        self.success = _success_classifier(success, embodiment)
        self.embodiment = embodiment
        self.rollout = WorldModelRollout(self.loaded, embodiment, sampling=sampling, precision=precision)
        spec = self.rollout.spec
        if isinstance(dataset, EpisodeStore):
            self.store: EpisodeStore | None = dataset
        else:
            path = dataset if dataset is not None else run_dataset(self.loaded, embodiment)
            self.store = EpisodeStore(path) if path is not None else None
        if self.store is not None and self.store.embodiment != embodiment:
            raise ConfigError(f"dataset {self.store.root} is of embodiment {self.store.embodiment!r}, expected one of "
                              f"{embodiment!r} (the robot this env simulates)")
        if self.store is not None and self.store.action_dim != spec.action_dim:
            raise ConfigError(f"dataset {self.store.root} has {self.store.action_dim} action dims, the model's "
                              f"embodiment {embodiment!r} has {spec.action_dim}")
        if self.store is not None:
            stats = self.store.action_stats
            low, high = stats["min"], stats["max"]
        else:
            mean = np.asarray(spec.mean[: spec.action_dim], np.float32)
            std = np.asarray(spec.std[: spec.action_dim], np.float32)
            low, high = mean - _BOUND_STDS * std, mean + _BOUND_STDS * std
        self.action_space = action_box(low, high, spec.chunk)
        h, w = self.rollout.image_size
        pixels = spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        self.observation_space: spaces.Space = pixels
        if obs_type == "pixels_agent_pos":
            names = self.rollout.state_names
            if not names:
                raise ConfigError(f"obs_type='pixels_agent_pos' needs a model that reads out a state for {embodiment!r} "
                                  "(trained on data that records one); this run's has none, expected obs_type='pixels'")
            self.observation_space = spaces.Dict({
                "pixels": pixels, "agent_pos": spaces.Box(-np.inf, np.inf, shape=(len(names),), dtype=np.float32)})
        window = self.rollout.window
        self.context_frames = context_frames if context_frames is not None else max(1, window // 2)
        if not 1 <= self.context_frames <= window:
            raise ConfigError(f"context_frames={self.context_frames} is invalid, expected 1 to {window} (the model's window)")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps={max_episode_steps} is invalid, expected an integer >= 1 or None")
        self.max_episode_steps = max_episode_steps
        self.out_of_range = OutOfRange(out_of_range)
        self.generator = torch.Generator(device=self.rollout.device)
        self.steps = 0

    def context(self, value: Any, rng: np.random.Generator) -> Context:
        spec = self.rollout.spec
        context = parse_context(value, store=self.store, embodiment=self.embodiment, num_frames=self.context_frames,
                                chunk=spec.chunk, chunk_dim=spec.chunk_dim, rng=rng)
        return check_context(context, embodiment=self.embodiment, image_size=self.rollout.image_size,
                             state_dim=len(self.rollout.state_names))

    def reset(self, contexts: list[Context], seed: int) -> np.ndarray:
        """Start one rollout per context (all with the same number of frames); returns frames (B, H, W, 3)."""
        lengths = {len(c.frames) for c in contexts}
        if len(lengths) != 1:
            raise ConfigError(f"contexts of a batch have different lengths {sorted(lengths)}, expected one length")
        known = all(c.actions is not None for c in contexts)
        frames = np.stack([c.frames for c in contexts])  # (B, n, H, W, 3)
        actions = np.stack([c.actions for c in contexts]) if known else None  # (B, n-1, k*A)
        recorded = self.rollout.state_names and all(c.state is not None for c in contexts)
        states = np.stack([c.state for c in contexts]) if recorded else None  # (B, S)
        self.generator.manual_seed(seed)
        self.steps = 0
        self._above = np.zeros(len(contexts), dtype=np.int64)  # per env: frames in a row judged a success
        return self.rollout.reset(frames, actions, states)

    def observations(self, frames: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        """The batch's observations: frames (B, H, W, 3), or the pixels + agent_pos dict."""
        if self.obs_type == "pixels":
            return frames.copy()
        return {"pixels": frames.copy(), "agent_pos": self.rollout.states.astype(np.float32, copy=True)}

    def step(self, actions: np.ndarray) -> np.ndarray:
        """actions (B, chunk, A) or (B, A) (the Box's shape) already checked -> next frames (B, H, W, 3)."""
        if self.rollout.frames is None:
            raise ConfigError("the env was stepped before reset(); call reset() first")
        self.steps += 1
        return self.rollout.step(actions.reshape(len(actions), -1), self.generator)

    def judge(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rewards (B,) and success flags (B,) of generated frames (B, H, W, 3); flags None without a classifier.

        A frame is a success once the classifier's episode rule holds: its last ``min_frames``
        frames (this one included) all scored above its ``threshold``."""
        if self.success is None:
            return np.zeros(len(frames)), None
        above = self.success.predict(frames) > self.success.threshold
        self._above = np.where(above, self._above + 1, 0)
        flags = self._above >= self.success.min_frames
        return flags.astype(np.float64), flags

    @property
    def truncated(self) -> bool:
        return self.max_episode_steps is not None and self.steps >= self.max_episode_steps


def _success_classifier(success: SuccessJudge | str | Path | None, embodiment: str) -> SuccessJudge | None:
    """A success classifier from a path (or one given as is); it must be for ``embodiment``."""
    if success is None:
        return None
    if isinstance(success, (str, Path)):
        from hma.eval.success import load_success_classifier

        success = load_success_classifier(success)
    if success.embodiment != embodiment:
        raise ConfigError(f"the success classifier is for {success.embodiment!r}, expected one for {embodiment!r}")
    return success


def make_registered(*, run: RunLike = DEFAULT_RUN, **kwargs: Any) -> "WorldModelEnv":
    """The entry point of ``hma/WorldModel-v0``: gymnasium.make's TimeLimit truncates, not the env.
    Without ``run`` it is the model shipped with hma."""
    return WorldModelEnv(run, **kwargs, max_episode_steps=None)


class WorldModelEnv(gym.Env):
    """A learned simulator of one embodiment.

    Args:
        run: a run folder (opened with :func:`hma.load`) or an already loaded run.
        embodiment: the robot, one of the model's embodiments.
        dataset: the dataset that gives the action bounds and default contexts (default:
            the one recorded in the run for this embodiment).
        context_frames: frames of context a default reset takes from an episode (default: half the window).
        max_episode_steps: steps until ``truncated`` is True (None: never; ``gymnasium.make``
            leaves the limit to its TimeLimit wrapper, so that its ``max_episode_steps`` holds).
        sampling: :class:`MaskGITSampling` / :class:`MARSampling` (default: 2 unmasking steps, as the paper).
        out_of_range: "clip" (default) or "raise" for finite actions outside the Box.
        device: where the model and tokenizer run (default: a loaded run stays where it is; a
            run folder loads onto the GPU when there is one, else the CPU).
        success: a success classifier (or its folder) for this embodiment: reward 1 and
            ``info["success"]`` True on frames it judges a success.
        precision: "auto" (default: int8 on a CPU with VNNI/AMX, bf16 on CUDA, else fp32), "fp32", "bf16" or
            "int8" (:mod:`hma.sampling.precision`); ``core.rollout.engine.choice`` says which and why.
        obs_type: "pixels" (default: the frame) or "pixels_agent_pos" (``{"pixels", "agent_pos"}``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, run: RunLike, embodiment: str, *, dataset: str | Path | EpisodeStore | None = None,
                 context_frames: int | None = None, max_episode_steps: int | None = 100,
                 sampling: MaskGITSampling | MARSampling | None = None, out_of_range: str = "clip",
                 render_mode: str | None = None, device: str | torch.device | None = None,
                 success: SuccessJudge | str | Path | None = None, precision: str = "auto",
                 obs_type: str = "pixels") -> None:
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode {render_mode!r} is unsupported, expected 'rgb_array' or None")
        self.core = SimCore(run, embodiment, dataset=dataset, context_frames=context_frames,
                            max_episode_steps=max_episode_steps, sampling=sampling, out_of_range=out_of_range,
                            device=device, success=success, precision=precision, obs_type=obs_type)
        self.render_mode = render_mode
        self.action_space = self.core.action_space
        self.observation_space = self.core.observation_space
        self.metadata = {**self.metadata, "render_fps": int(round(self.core.rollout.frame_hz))}
        self._frame: np.ndarray | None = None

    @property
    def embodiment(self) -> str:
        return self.core.embodiment

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """``options["context"]``: see :func:`hma.envs.context.parse_context` (default: a held-out episode)."""
        super().reset(seed=seed)
        context = self.core.context((options or {}).get("context"), self.np_random)
        torch_seed = int(self.np_random.integers(2 ** 62))
        self._frame = self.core.reset([context], torch_seed)[0]
        return self._observation(), {"context_frames": len(context.frames)}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        action = check_action(action, self.action_space, embodiment=self.embodiment, out_of_range=self.core.out_of_range)
        self._frame = self.core.step(action[None])[0]
        rewards, flags = self.core.judge(self._frame[None])
        info: dict[str, Any] = {"step": self.core.steps}
        if flags is not None:
            info["success"] = bool(flags[0])
        return self._observation(), float(rewards[0]), False, self.core.truncated, info

    def _observation(self) -> Any:
        obs = self.core.observations(self._frame[None])
        return obs[0] if isinstance(obs, np.ndarray) else {k: v[0] for k, v in obs.items()}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._frame is None:
            raise ConfigError("render() was called before reset(); call reset() first")
        return self._frame.copy()
