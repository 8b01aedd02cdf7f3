"""``hma data import-lerobot``: a LeRobotDataset folder (v2.1 or v3.0) into an episode store."""

from __future__ import annotations

import shutil
from pathlib import Path

from hma.data.lerobot.reader import LeRobotSource
from hma.data.store import METADATA_FILE, PARTIAL_SUFFIX, DatasetInfo, EpisodeStore, StoreWriter
from hma.errors import ConfigError, DataError
from hma.io import is_int


def import_lerobot(
    src: str | Path,
    out: str | Path,
    *,
    camera: str | None = None,
    all_cameras: bool = True,
    embodiment: str | None = None,
    image_size: int | None = None,
) -> EpisodeStore:
    """Convert a LeRobotDataset folder (v2.1 or v3.0) into a native episode store at ``out``.

    ``camera`` picks the primary camera, the frames the world model trains on (default:
    :func:`default_camera`); with ``all_cameras`` the other cameras are kept too, as the
    store's extra cameras (at the same ``image_size``);
    ``embodiment`` defaults to the dataset's robot_type, else the folder name;
    ``image_size`` resizes frames to a square. ``out`` must be a new or empty folder (checked
    before anything is read). An interrupted import (Ctrl-C, a kill) resumes; one that fails
    deletes what it staged (``OUT.partial``). ``src`` may be the Hub name (``org/name``) of a
    dataset repo (:mod:`hma.hub`; a local path wins).
    """
    if image_size is not None and (not is_int(image_size) or image_size <= 0):
        raise ConfigError(f"image_size is {image_size!r}, expected a positive number of pixels")
    out = Path(out)
    if (out / METADATA_FILE).exists():
        raise DataError(f"dataset {out} already exists, expected a new folder to import into (remove it first, "
                        "or choose another folder)")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise DataError(f"{out} already exists and is not empty, expected a new or empty folder to import into")
    try:
        return _convert(src, out, camera=camera, all_cameras=all_cameras, embodiment=embodiment, image_size=image_size)
    except Exception:
        shutil.rmtree(out.with_name(out.name + PARTIAL_SUFFIX), ignore_errors=True)
        raise


def _convert(src: str | Path, out: Path, *, camera: str | None, all_cameras: bool, embodiment: str | None,
             image_size: int | None) -> EpisodeStore:
    """:func:`import_lerobot` once ``out`` is known to be free."""
    from hma.hub import resolve

    src = resolve(src, repo_type="dataset", what="LeRobot dataset")
    with LeRobotSource(src, camera=camera, all_cameras=all_cameras) as source:
        # The first episode fixes the frame size the store is declared with.
        first = source.read_episode(source.episodes[0], image_size=image_size)
        height, width = first.frames.shape[1:3]
        info = DatasetInfo(
            embodiment=embodiment or source.info.robot_type or src.resolve().name,
            simulator="lerobot",
            action_names=source.action_names,
            control_hz=source.fps,
            image_size=(height, width),
            camera=source.camera,
            cameras={name: tuple(f.shape[1:3]) for name, f in (first.cameras or {}).items()},
            task=source.tasks[0] if len(source.tasks) == 1 else "",
            state_names=source.state_names,
            extra={"lerobot": {
                "source": str(src.resolve()), "codebase_version": source.info.version, "camera": source.camera,
                "cameras": list(source.info.cameras),
                "robot_type": source.info.robot_type, "tasks": source.tasks,
            }},
        )
        writer = StoreWriter(out, info)
        from hma.progress import bar

        for i in bar(range(writer.num_staged, len(source.episodes)), desc="import-lerobot", unit="ep", leave=False):
            ref = source.episodes[i]
            episode = first if i == 0 else source.read_episode(ref, image_size=image_size)
            for name, frames in {source.camera: episode.frames, **(episode.cameras or {})}.items():
                expected = (height, width) if name == source.camera else info.cameras[name]
                if frames.shape[1:3] != tuple(expected):
                    where = ref.videos[name].file if name in ref.videos else ref.data_file
                    raise DataError(
                        f"{where}: episode {ref.index} has {frames.shape[2]}x{frames.shape[1]} {name} frames, expected "
                        f"{expected[1]}x{expected[0]} like episode {source.episodes[0].index} (pass --image-size to resize)")
            writer.add_episode(episode.frames, episode.actions, episode.success, state=episode.state,
                               reward=episode.reward, task=ref.tasks[0] if ref.tasks else None, cameras=episode.cameras)
        return writer.finalize()
