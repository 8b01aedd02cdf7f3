"""Fast offscreen MuJoCo rendering shared by every MuJoCo-based embodiment.

The simulators' own renderers default to 4x multisampling, shadows and reflections. With
software OpenGL (EGL without a GPU, as on a CPU box) those dominate the cost of a step:
turning them off made a 64x64 Meta-World frame about 10x and a robosuite frame about 4x
cheaper. At 64x64 the look barely changes, and the world model only ever sees it at that size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraSpec:
    """A named camera of the model, or a free camera given by where it looks from."""

    name: str | None = None
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 1.0
    azimuth: float = 90.0
    elevation: float = -45.0
    track_body: str | None = None  # a free camera that follows this body (e.g. a running cheetah)


class FastRenderer:
    """``mujoco.Renderer`` with multisampling, shadows and reflections switched off.

    ``hidden_geom_groups`` hides geom groups (robosuite keeps collision meshes in group 0).
    """

    def __init__(self, model, size: int, camera: CameraSpec, *, hidden_geom_groups: tuple[int, ...] = ()) -> None:
        import mujoco

        # offsamples is read when the GL context's framebuffer is created, so it must be
        # set before the Renderer exists; the scene flags are read on every render.
        model.vis.quality.offsamples = 0
        if model.vis.global_.offwidth < size or model.vis.global_.offheight < size:
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
            model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self._renderer = mujoco.Renderer(model, height=size, width=size)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._option = mujoco.MjvOption()
        for group in hidden_geom_groups:
            self._option.geomgroup[group] = 0
        if camera.name is not None:
            self._camera: object = camera.name
        else:
            cam = mujoco.MjvCamera()
            if camera.track_body is not None:
                cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
                cam.trackbodyid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, camera.track_body)
            else:
                cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.lookat[:] = camera.lookat
            cam.distance = camera.distance
            cam.azimuth = camera.azimuth
            cam.elevation = camera.elevation
            self._camera = cam

    def render(self, data) -> np.ndarray:
        """The current frame, uint8 (S, S, 3), right way up (mujoco.Renderer flips it)."""
        self._renderer.update_scene(data, camera=self._camera, scene_option=self._option)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()
