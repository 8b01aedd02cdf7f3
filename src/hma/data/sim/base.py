"""What every simulator adapter offers the episode generator."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SimEnv(Protocol):
    """One simulator instance of one embodiment.

    Actions are in the simulator's own units (what gets stored). ``explore(z)`` turns a
    smooth random vector ``z`` in [-1, 1]^A into such an action, so each simulator decides
    what "random" means for it (a torque, an end-effector delta, a target position).
    """

    action_low: np.ndarray   # (A,)
    action_high: np.ndarray  # (A,)
    state_names: list[str]   # what state() returns, one name per value

    def reset(self, rng: np.random.Generator) -> None: ...
    def step(self, action: np.ndarray) -> None: ...
    def frame(self) -> np.ndarray: ...             # uint8 (S, S, 3)
    def success(self) -> bool | None: ...          # None where the task has no success signal
    def state(self) -> np.ndarray: ...             # float (S,) what the simulator exposes of its state now
    def reward(self) -> float: ...                 # the simulator's reward for the last step (0 before one)
    def expert(self) -> np.ndarray: ...            # (A,) the scripted controller's action now
    def explore(self, z: np.ndarray) -> np.ndarray: ...
    def close(self) -> None: ...


def scale_to_box(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map ``z`` in [-1, 1] affinely onto the box [low, high]."""
    return low + (np.clip(z, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def reach_torque(model, data, body: str, target: np.ndarray, dofs: np.ndarray, *,
                kp: float, kd: float, damping: float = 0.01) -> np.ndarray:
    """Joint torques that pull ``body`` towards ``target``: a joint-space PD on the
    damped-least-squares step ``dq = J^T (J J^T + damping I)^-1 (target - x)``.

    Plain Jacobian-transpose control stalled or oscillated on the Reacher and Pusher arms
    (it ignores how differently the joints move the tip); the least-squares step does not.
    """
    import mujoco

    body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    jacp = np.zeros((3, model.nv))
    mujoco.mj_jacBody(model, data, jacp, None, body_id)
    jac = jacp[:, dofs]  # (3, J)
    error = np.asarray(target, dtype=np.float64) - data.xpos[body_id]
    dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(3), error)
    return kp * dq - kd * data.qvel[dofs]


def joint_dofs(model, joints: list[str]) -> np.ndarray:
    """Degree-of-freedom indices of named hinge/slide joints."""
    import mujoco

    return np.array([model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in joints])
