"""Gymnasium MuJoCo embodiments: Reacher (2-D), Pusher (7-D), HalfCheetah (6-D).

gymnasium ships no experts for these, so each has a small scripted controller: a
Jacobian-transpose reach for Reacher, a get-behind-then-push routine for Pusher and an
open-loop sinusoidal gait for HalfCheetah. The control rate comes from ``frame_skip``
(every task here has a 0.01 s timestep, so frame_skip=5 is 20 Hz). Reacher reports
success (the fingertip on the target); gymnasium defines none for the other two.
"""

from __future__ import annotations

import abc

import numpy as np

from hma.data.sim.base import reach_torque, joint_dofs, scale_to_box
from hma.data.sim.render import CameraSpec, FastRenderer


class GymMujocoSim(abc.ABC):
    """A gymnasium MuJoCo env stepped directly (no TimeLimit: the generator sets lengths)."""

    env_id = ""
    camera = CameraSpec()
    # geom name -> rgba. Colour is only drawn, never simulated: recolouring the parts the
    # actions move makes them stand out at 64x64 and leaves the dynamics as they were.
    geom_rgba: dict[str, tuple[float, float, float, float]] = {}

    def __init__(self, image_size: int, *, frame_skip: int) -> None:
        import gymnasium as gym

        self._env = gym.make(self.env_id, frame_skip=frame_skip)
        self.env = self._env.unwrapped
        self.model, self.data = self.env.model, self.env.data
        self.action_low = self.env.action_space.low.astype(np.float64)
        self.action_high = self.env.action_space.high.astype(np.float64)
        for name, rgba in self.geom_rgba.items():
            self.model.geom(name).rgba = rgba
        self._renderer = FastRenderer(self.model, image_size, self.camera)
        self._t = 0
        self._reward = 0.0
        self.state_names = [f"qpos{i}" for i in range(self.model.nq)] + [f"qvel{i}" for i in range(self.model.nv)]

    def reset(self, rng: np.random.Generator) -> None:
        self.env.reset(seed=int(rng.integers(2**31)))
        self._t = 0
        self._reward = 0.0

    def step(self, action: np.ndarray) -> None:
        _, reward, _, _, _ = self.env.step(action.astype(np.float32))
        self._reward = float(reward)
        self._t += 1

    def state(self) -> np.ndarray:
        """Joint positions and velocities (MuJoCo's qpos, qvel)."""
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)

    def reward(self) -> float:
        return self._reward

    def frame(self) -> np.ndarray:
        return self._renderer.render(self.data)

    def success(self) -> bool | None:
        return None

    @abc.abstractmethod
    def expert(self) -> np.ndarray:
        """The task's scripted controller."""

    def explore(self, z: np.ndarray) -> np.ndarray:
        return scale_to_box(z, self.action_low, self.action_high)

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


class ReacherSim(GymMujocoSim):
    env_id = "Reacher-v5"
    # Top-down and just wide enough for the fingertip at full reach (0.21 m) and every
    # target (reset draws them within 0.2 m of the base).
    camera = CameraSpec(lookat=(0.0, 0.0, 0.0), distance=0.6, azimuth=90.0, elevation=-90.0)
    geom_rgba = {
        "link0": (0.1, 0.2, 0.8, 1.0),
        "link1": (0.0, 0.6, 0.9, 1.0),
        "fingertip": (1.0, 0.8, 0.0, 1.0),
        "target": (0.9, 0.1, 0.1, 1.0),
    }
    # Drawn radii (m). reacher.xml's 1 cm links are 1-2 px wide at 64x64, which an image
    # tokenizer erases. Nothing in reacher.xml collides (contype=0 everywhere) and the
    # masses came from the geoms at compile time, so thicker geoms change the look only.
    _radii = {"link0": 0.03, "link1": 0.03, "fingertip": 0.035, "target": 0.04}
    # Success: the fingertip's centre within this planar distance (m) of the target's. 1.5 cm
    # is under half the drawn target's radius, so a frame shows it (the yellow fingertip over
    # the red disc's centre); the scripted expert gets there within 2 s, a random policy's
    # swings cross it in about a third of its 4 s episodes.
    reach_tolerance = 0.015

    def __init__(self, image_size: int, *, frame_skip: int) -> None:
        import mujoco

        super().__init__(image_size, frame_skip=frame_skip)
        self._dofs = joint_dofs(self.model, ["joint0", "joint1"])
        for name, radius in self._radii.items():
            self.model.geom(name).size[0] = radius
        # A flat disc on the floor, wider than the arm: a target sphere at the arm's
        # height would hide under the arm whenever the arm crosses it.
        self.model.geom("target").type = mujoco.mjtGeom.mjGEOM_CYLINDER
        self.model.geom("target").size[1] = 0.001

    def success(self) -> bool:
        offset = self.data.body("fingertip").xpos[:2] - self.data.body("target").xpos[:2]
        return bool(np.linalg.norm(offset) < self.reach_tolerance)

    def expert(self) -> np.ndarray:
        target = self.data.body("target").xpos.copy()
        target[2] = self.data.body("fingertip").xpos[2]  # a planar arm: only x, y can be reached
        torque = reach_torque(self.model, self.data, "fingertip", target, self._dofs, kp=1.0, kd=0.05)
        return np.clip(torque, self.action_low, self.action_high)


class PusherSim(GymMujocoSim):
    env_id = "Pusher-v5"
    camera = CameraSpec(lookat=(0.2, -0.3, -0.3), distance=1.6, azimuth=180.0, elevation=-50.0)
    _arm = ["r_shoulder_pan_joint", "r_shoulder_lift_joint", "r_upper_arm_roll_joint", "r_elbow_flex_joint",
            "r_forearm_roll_joint", "r_wrist_flex_joint", "r_wrist_roll_joint"]

    def __init__(self, image_size: int, *, frame_skip: int) -> None:
        super().__init__(image_size, frame_skip=frame_skip)
        self._dofs = joint_dofs(self.model, self._arm)

    def expert(self) -> np.ndarray:
        tip = self.data.body("tips_arm").xpos
        obj = self.data.body("object").xpos
        goal = self.data.body("goal").xpos
        push_dir = goal[:2] - obj[:2]
        push_dir /= np.linalg.norm(push_dir) + 1e-6
        # The tip cannot reach the object's centre height (the arm meets the table first),
        # so it travels at the highest height that still touches the object.
        height = np.array([0.0, 0.0, 0.04])
        behind = obj + height
        behind[:2] -= 0.1 * push_dir
        # Get behind the object first, then push through it towards the goal.
        if np.linalg.norm(tip[:2] - behind[:2]) > 0.03:
            target = behind
        else:
            target = obj + height
            target[:2] += 0.1 * push_dir
        torque = reach_torque(self.model, self.data, "tips_arm", target, self._dofs, kp=10.0, kd=1.0)
        return np.clip(torque, self.action_low, self.action_high)


class HalfCheetahSim(GymMujocoSim):
    env_id = "HalfCheetah-v5"
    # 1.6x closer than at distance 4, and looking at torso height rather than the floor:
    # the whole body stayed in view on 96% of the steps of generated episodes (closer, a
    # stretched or rearing cheetah leaves the frame).
    camera = CameraSpec(lookat=(0.0, 0.0, 0.7), distance=2.5, azimuth=90.0, elevation=-10.0, track_body="torso")
    # Torso, back leg and front leg in three colours that stand out against both the
    # checkered floor and the sky, and tell the legs apart.
    geom_rgba = {
        **dict.fromkeys(["torso", "head"], (0.85, 0.15, 0.1, 1.0)),
        **dict.fromkeys(["bthigh", "bshin", "bfoot"], (0.1, 0.3, 0.9, 1.0)),
        **dict.fromkeys(["fthigh", "fshin", "ffoot"], (1.0, 0.7, 0.0, 1.0)),
    }
    # Back and front legs in anti-phase, each joint lagging the one above it: a bounding gait.
    _phases = np.array([0.0, 0.5, 1.0, np.pi, np.pi + 0.5, np.pi + 1.0])

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self._hz = rng.uniform(1.5, 3.0)
        self._amplitude = rng.uniform(0.6, 1.0)

    def expert(self) -> np.ndarray:
        phase = 2 * np.pi * self._hz * self._t * self.env.dt + self._phases
        return self._amplitude * np.sin(phase)
