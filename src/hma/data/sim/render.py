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
    # A free camera whose lookat x follows this body (e.g. a running cheetah); y and z stay
    # at ``lookat``'s.
    track_body: str | None = None


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
        self._track = None
        if camera.name is not None:
            self._camera: object = camera.name
        else:
            cam = mujoco.MjvCamera()
            # MuJoCo's own tracking camera moves only part of the way towards its body on
            # each render and keeps that state across episodes, so a frame would depend on
            # which frames were rendered before it (a new episode opened with the previous
            # one's pan). Following the body ourselves makes every frame a function of the
            # simulator state alone, which exact replays from a branch point rely on.
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            if camera.track_body is not None:
                self._track = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, camera.track_body)
            cam.lookat[:] = camera.lookat
            cam.distance = camera.distance
            cam.azimuth = camera.azimuth
            cam.elevation = camera.elevation
            self._camera = cam

    def render(self, data) -> np.ndarray:
        """The current frame, uint8 (S, S, 3), right way up (mujoco.Renderer flips it)."""
        if self._track is not None:
            self._camera.lookat[0] = data.xpos[self._track][0]
        self._renderer.update_scene(data, camera=self._camera, scene_option=self._option)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()
