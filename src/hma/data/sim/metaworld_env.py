"""Meta-World embodiments: the Sawyer arm (4-D: end-effector xyz delta + grip) with the
benchmark's own scripted expert policies and success flags."""

from __future__ import annotations

import numpy as np

from hma.data.sim.base import scale_to_box
from hma.data.sim.render import CameraSpec, FastRenderer

# Meta-World's corner cameras come out upside down or rolled; a free camera beside the
# table shows the arm and objects the right way up. Each is as close as keeps the hand
# in view on 99-100% of the steps of generated episodes, with the object and goal always
# in view: button-press starts the hand nearer the robot, so its camera looks further back.
_CAMERAS = {
    "push-v3": CameraSpec(lookat=(0.0, 0.68, 0.18), distance=0.7, azimuth=135.0, elevation=-40.0),
    "button-press-v3": CameraSpec(lookat=(0.0, 0.6, 0.15), distance=0.75, azimuth=135.0, elevation=-40.0),
}
# task -> {geom: rgba} drawn plain, without the material's texture. The puck's red wood
# merges into the red arm and the brown table at 64x64; colour is never simulated.
_PUSH_MIN_GOAL_DISTANCE = 0.15  # SawyerPushEnvV3.reset_model's own bound

_PLAIN_GEOMS = {"push-v3": {"objGeom": (1.0, 0.85, 0.0, 1.0)}}


class MetaWorldSim:
    def __init__(self, image_size: int, *, task: str, policy: str, frame_skip: int) -> None:
        import metaworld
        import metaworld.policies

        benchmark = metaworld.MT1(task, seed=0)
        self.env = benchmark.train_classes[task]()
        self.env.set_task(benchmark.train_tasks[0])
        self._task = task
        # The model runs at 0.0025 s per step; frame_skip sets the control rate (20 -> 20 Hz).
        self.env.frame_skip = frame_skip
        self._policy = getattr(metaworld.policies, policy)()
        self.action_low = self.env.action_space.low.astype(np.float64)
        self.action_high = self.env.action_space.high.astype(np.float64)
        for name, rgba in _PLAIN_GEOMS.get(task, {}).items():
            self.env.model.geom(name).rgba = rgba
            self.env.model.geom(name).matid = -1
        self._renderer = FastRenderer(self.env.model, image_size, _CAMERAS[task])
        self._obs = None
        self._success = False
        self._reward = 0.0
        self.state_names = [f"obs{i}" for i in range(self.env.observation_space.shape[0])]

    def reset(self, rng: np.random.Generator) -> None:
        # A task's object and goal positions come from _last_rand_vec when it is frozen;
        # drawing it here from our own generator makes every episode reproducible.
        space = self.env._random_reset_space
        vec = rng.uniform(space.low, space.high)
        # push-v3 redraws (from the frozen vector, so forever) while object and goal lie
        # within 0.15 m of each other; redraw here instead, from our generator.
        while self._task == "push-v3" and np.linalg.norm(vec[:2] - vec[3:5]) < _PUSH_MIN_GOAL_DISTANCE:
            vec = rng.uniform(space.low, space.high)
        self.env._last_rand_vec = vec
        self._obs, _ = self.env.reset()
        self._success = False
        self._reward = 0.0

    def step(self, action: np.ndarray) -> None:
        self._obs, reward, _, _, info = self.env.step(action)
        self._success = bool(info["success"])
        self._reward = float(reward)

    def state(self) -> np.ndarray:
        """Meta-World's observation vector: hand position, gripper opening, object poses, goal."""
        return np.asarray(self._obs, dtype=np.float32)

    def reward(self) -> float:
        return self._reward

    def frame(self) -> np.ndarray:
        return self._renderer.render(self.env.data)

    def success(self) -> bool | None:
        return self._success

    def expert(self) -> np.ndarray:
        return np.asarray(self._policy.get_action(self._obs), dtype=np.float64)

    def explore(self, z: np.ndarray) -> np.ndarray:
        return scale_to_box(z, self.action_low, self.action_high)

    def close(self) -> None:
        self._renderer.close()
        self.env.close()
