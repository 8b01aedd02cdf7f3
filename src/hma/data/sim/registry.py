"""Embodiment registry: name -> how to simulate it.

Every control rate is a multiple of 10 Hz because training resamples all datasets to a
common 10 Hz frame rate (:func:`hma.data.windows.frame_stride`); each 10 Hz frame then
carries a chunk of ``control_hz / 10`` actions, as in the paper's handling of robots with
different control frequencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

from hma.data.sim.base import SimEnv
from hma.data.windows import DEFAULT_FRAME_HZ
from hma.errors import EmbodimentError

FRAME_HZ = round(DEFAULT_FRAME_HZ)  # an integer divisor of every simulator's control rate


def _robosuite(robot: str, image_size: int) -> SimEnv:
    from hma.data.sim.robosuite_env import RobosuiteLiftSim

    return RobosuiteLiftSim(image_size, robot=robot, control_hz=20)


def _metaworld(task: str, policy: str, image_size: int) -> SimEnv:
    from hma.data.sim.metaworld_env import MetaWorldSim

    return MetaWorldSim(image_size, task=task, policy=policy, frame_skip=20)  # 0.0025 s * 20 = 20 Hz


def _gym(cls_name: str, frame_skip: int, image_size: int) -> SimEnv:
    from hma.data.sim import gym_env

    return getattr(gym_env, cls_name)(image_size, frame_skip=frame_skip)


def _pusht(image_size: int) -> SimEnv:
    from hma.data.sim.pusht_env import PushTSim

    return PushTSim(image_size)


@dataclass(frozen=True)
class SimEmbodiment:
    """One robot in one simulator and task; ``make(image_size)`` builds a :class:`SimEnv`.

    ``task`` is the simulator's own id of the task (``push-v3``), ``instruction`` what a
    language-conditioned policy reads: the dataset's task string (LeRobot's ``tasks``).
    """

    name: str
    simulator: str
    task: str
    instruction: str
    action_names: tuple[str, ...]
    control_hz: int
    episode_seconds: float  # length of a default-suite episode
    expert: str             # what drives the expert segments, recorded in the metadata
    make: Callable[[int], SimEnv] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.instruction[:1].isupper() and self.instruction.endswith(".")):
            raise EmbodimentError(f"embodiment {self.name!r} has instruction {self.instruction!r}, "
                                  "expected a sentence such as 'Push the puck to the goal.'")

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def stride(self) -> int:
        """Control steps per 10 Hz training frame."""
        return self.control_hz // FRAME_HZ


_OSC = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
_ROBOSUITE_ARMS = {"panda": "Panda", "sawyer": "Sawyer", "iiwa": "IIWA", "ur5e": "UR5e", "jaco": "Jaco", "kinova3": "Kinova3"}

EMBODIMENTS: dict[str, SimEmbodiment] = {
    **{
        f"robosuite_lift_{key}": SimEmbodiment(
            f"robosuite_lift_{key}", "robosuite", "Lift", "Lift the cube.", _OSC, 20, 5.0,
            "scripted grasp-and-lift via OSC deltas", partial(_robosuite, robot),
        )
        for key, robot in _ROBOSUITE_ARMS.items()
    },
    "metaworld_push_sawyer": SimEmbodiment(
        "metaworld_push_sawyer", "metaworld", "push-v3", "Push the puck to the goal.",
        ("dx", "dy", "dz", "grip"), 20, 5.0,
        "metaworld.policies.SawyerPushV3Policy", partial(_metaworld, "push-v3", "SawyerPushV3Policy"),
    ),
    "metaworld_button_press_sawyer": SimEmbodiment(
        "metaworld_button_press_sawyer", "metaworld", "button-press-v3", "Press the button.",
        ("dx", "dy", "dz", "grip"), 20, 4.0,
        "metaworld.policies.SawyerButtonPressV3Policy", partial(_metaworld, "button-press-v3", "SawyerButtonPressV3Policy"),
    ),
    "gym_reacher": SimEmbodiment(
        "gym_reacher", "gymnasium", "Reacher-v5", "Move the fingertip to the red target.",
        ("torque_shoulder", "torque_elbow"), 20, 4.0,
        "least-squares IK reach to the target", partial(_gym, "ReacherSim", 5),
    ),
    "gym_pusher": SimEmbodiment(
        "gym_pusher", "gymnasium", "Pusher-v5", "Push the cylinder to the goal.",
        ("shoulder_pan", "shoulder_lift", "upper_arm_roll", "elbow_flex", "forearm_roll", "wrist_flex", "wrist_roll"),
        20, 5.0, "least-squares IK: get behind the object, push towards the goal", partial(_gym, "PusherSim", 5),
    ),
    "gym_halfcheetah": SimEmbodiment(
        "gym_halfcheetah", "gymnasium", "HalfCheetah-v5", "Run forward as fast as possible.",
        ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"),
        20, 5.0, "open-loop sinusoidal bounding gait", partial(_gym, "HalfCheetahSim", 5),
    ),
    "pusht": SimEmbodiment(
        "pusht", "pymunk", "PushT-v0", "Push the T-shaped block onto the target outline.",
        ("target_x", "target_y"), 10, 10.0,
        "get-behind-and-push heuristic", _pusht,
    ),
}


def get_embodiment(name: str) -> SimEmbodiment:
    """The spec of ``name``; :class:`EmbodimentError` naming the known ones otherwise."""
    try:
        return EMBODIMENTS[name]
    except KeyError:
        raise EmbodimentError(f"unknown embodiment {name!r}; expected one of: {', '.join(sorted(EMBODIMENTS))}") from None


def dataset_task(meta: Mapping[str, Any]) -> tuple[str, str]:
    """A dataset's task string and the simulator's id of its task ("" for data no simulator made),
    from its ``metadata.json``.

    Simulated datasets record the instruction as ``task`` and the id as ``extra.sim_task``;
    those generated before instructions were recorded hold the id as ``task``, and their
    instruction is the registry's.
    """
    task = str(meta.get("task") or "")
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    if isinstance(extra.get("sim_task"), str):
        return task, extra["sim_task"]
    spec = EMBODIMENTS.get(str(meta.get("embodiment")))
    if spec is not None and str(extra.get("generator", "")).startswith("hma.data.sim") and task == spec.task:
        return spec.instruction, spec.task
    return task, ""
