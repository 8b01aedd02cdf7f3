"""robosuite embodiments: the Lift task with any of its arms, 7-D actions (OSC_POSE
end-effector position and rotation deltas + gripper), 20 Hz control, success from the
task's own ``_check_success``."""

from __future__ import annotations

import numpy as np

from hma.data.sim.base import scale_to_box
from hma.data.sim.render import CameraSpec, FastRenderer

ACTION_NAMES = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
# Closer than robosuite's agentview, where the cube is a few pixels at 64x64, and from
# 30 degrees off head-on, so the arm does not hide behind its own gripper.
# The gripper and cube stay in view while the expert lifts the cube to _LIFT_HEIGHT.
_CAMERA = CameraSpec(lookat=(-0.12, 0.0, 0.97), distance=0.7, azimuth=150.0, elevation=-30.0)


_PROPRIO = "robot0_proprio-state"
# How high the expert lifts the cube (metres above the table), then holds it. Lift succeeds
# above 0.04; a cube carried higher leaves the camera's view, and a frame of an empty table
# would then mean "lifted" to anything judging success from frames.
_LIFT_HEIGHT = 0.10


class RobosuiteLiftSim:
    def __init__(self, image_size: int, *, robot: str, control_hz: int) -> None:
        import robosuite

        # hard_reset=False keeps one MuJoCo model for the whole run instead of recompiling
        # it every episode; robosuite's own renderer is off because ours is faster. The
        # fixed seed fixes the cube's size, which robosuite draws when it builds the model:
        # every instance must simulate the same world, or a branch replayed in a new
        # instance would not reproduce its episode.
        self.env = robosuite.make(
            "Lift", robots=robot, has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
            control_freq=control_hz, hard_reset=False, horizon=1_000_000, initialization_noise=None, seed=0,
        )
        self._obs = self.env.reset()
        self._reward = 0.0
        self.state_names = [f"proprio{i}" for i in range(len(self._obs[_PROPRIO]))]
        self.action_low, self.action_high = (np.asarray(x, dtype=np.float64) for x in self.env.action_spec)
        self._sim = self.env.sim
        self._renderer = FastRenderer(self._sim.model._model, image_size, _CAMERA, hidden_geom_groups=(0,))
        self._eef_site = self.env.robots[0].eef_site_id["right"]
        self._grip_steps = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.env.placement_initializer.rng = rng  # cube placement from our generator
        self._obs = self.env.reset()
        self._reward = 0.0
        self._grip_steps = 0

    def step(self, action: np.ndarray) -> None:
        self._obs, reward, _, _ = self.env.step(action)
        self._reward = float(reward)

    def state(self) -> np.ndarray:
        """robosuite's proprioceptive observation: joint angles (cos, sin) and velocities, end
        effector position and orientation, gripper joints."""
        return np.asarray(self._obs[_PROPRIO], dtype=np.float32)

    def reward(self) -> float:
        return self._reward

    def frame(self) -> np.ndarray:
        return self._renderer.render(self._sim.data._data)

    def success(self) -> bool | None:
        return bool(self.env._check_success())

    def expert(self) -> np.ndarray:
        """Above the cube, down to it, close the gripper for a few steps, lift it to
        ``_LIFT_HEIGHT`` above the table and hold it there."""
        eef = np.asarray(self._sim.data.site_xpos[self._eef_site])
        cube = np.asarray(self._sim.data.body_xpos[self.env.cube_body_id])
        action = np.zeros(len(self.action_low))
        gripper = -1.0
        if np.linalg.norm(eef - cube) > 0.04:
            self._grip_steps = 0  # lost the cube (or never had it): start over
        if np.linalg.norm(eef[:2] - cube[:2]) > 0.015 and self._grip_steps == 0:
            target = cube + np.array([0.0, 0.0, 0.08])
        elif eef[2] - cube[2] > 0.01 and self._grip_steps == 0:
            target = cube
        else:
            self._grip_steps += 1
            gripper = 1.0
            table = self.env.model.mujoco_arena.table_offset[2]
            target = cube if self._grip_steps < 8 else np.array([cube[0], cube[1], table + _LIFT_HEIGHT])
        # OSC_POSE scales an action of 1 to 5 cm, so a gain of 10 saturates beyond 10 cm.
        action[:3] = np.clip(10.0 * (target - eef), -1.0, 1.0)
        action[-1] = gripper
        return action

    def explore(self, z: np.ndarray) -> np.ndarray:
        action = scale_to_box(z, self.action_low, self.action_high)
        action[3:6] *= 0.3  # wild wrist spins hide the scene without teaching much
        return action

    def close(self) -> None:
        self._renderer.close()
        self.env.close()
