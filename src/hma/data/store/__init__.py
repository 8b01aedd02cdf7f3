"""The native episode store: one folder per dataset, memory-mapped for fast reading.

Layout of a dataset folder::

    metadata.json        schema version, embodiment, counts, action statistics, checksums
    frames.npy           (N, H, W, 3) uint8, one row per control step
    actions.npy          (N, A) float32, the action taken after observing frames[i]
    episode_starts.npy   (E + 1,) int64, episode e spans rows [starts[e], starts[e + 1])
    success.npy          (N,) bool, only when the source reports success
    state.npy            (N, S) float32, the proprioceptive/simulator state at frames[i], when recorded
    reward.npy           (N,) float32, the reward of the action at row i, when recorded
    cameras/<name>.npy   (N, H_c, W_c, 3) uint8, one file per extra camera, when recorded

``metadata.json`` also names the state's dimensions (``state_names``) and, when the
source has them, each episode's task string (``episode_tasks``), the primary camera's
name (``camera``: the one in ``frames.npy``, the camera the world model trains on) and the
extra cameras' sizes (``cameras``: name -> [H_c, W_c]) and, for episodes a world model
generated (``hma synth``), ``synthetic: true``.

One row per control step follows LeRobot's convention (a frame and the action taken at
it), so import/export are one-to-one. Training windows resample to a common frame rate
later (:mod:`hma.data.windows`), turning the k control steps inside one frame into one
action chunk, as the paper does for robots with different control frequencies.

Writing is resumable and atomic: :class:`StoreWriter` stages every finished episode as
its own file under ``<out>.partial/episodes/`` and, on :meth:`StoreWriter.finalize`,
writes the arrays, then ``metadata.json`` last, then renames the staging folder to
``<out>``. A killed writer leaves only a ``.partial`` folder, which the reader refuses
and the next writer resumes from.
"""


from hma.data.store.layout import (ACTIONS_FILE, CAMERAS_DIR, EPISODE_STARTS_FILE, FRAMES_FILE, METADATA_FILE,
                                   PARTIAL_SUFFIX, REWARD_FILE, SCHEMA_VERSION, STATE_FILE, SUCCESS_FILE, DatasetInfo,
                                   action_statistics, camera_file)
from hma.data.store.reader import EpisodeStore, find_datasets, open_datasets
from hma.data.store.writer import StoreWriter, holds_dataset, validate_episode, write_target

__all__ = ["ACTIONS_FILE", "CAMERAS_DIR", "EPISODE_STARTS_FILE", "FRAMES_FILE", "METADATA_FILE", "PARTIAL_SUFFIX",
           "REWARD_FILE", "SCHEMA_VERSION", "STATE_FILE", "SUCCESS_FILE", "DatasetInfo", "EpisodeStore", "StoreWriter",
           "action_statistics", "camera_file", "find_datasets", "holds_dataset", "open_datasets", "validate_episode",
           "write_target"]
