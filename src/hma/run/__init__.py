"""hma.run: a trained run, on disk (:mod:`hma.run.files`) and in memory (:class:`LoadedRun`).

``hma.load(RUN)`` is :func:`load`. Nothing here trains: evaluation, the simulator and the
apps load runs from this package, and :mod:`hma.train` writes them.
"""

from hma.run.kinds import MODEL_KINDS, build_model
from hma.run.loaded import LoadedRun, RunLike, load, open_run, run_dataset, run_datasets

__all__ = ["MODEL_KINDS", "LoadedRun", "RunLike", "build_model", "load", "open_run", "run_dataset", "run_datasets"]
