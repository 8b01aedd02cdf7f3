"""LeRobotDataset folders in and out of the native episode store.

:func:`import_lerobot` reads both on-disk layouts (v2.1: one parquet and one mp4 per
episode; v3.0: many episodes per chunked file) and ``dtype: image`` features;
:func:`export_lerobot` writes v3.0 and checks its own output by reading it back. The
lerobot package is not needed: everything goes through pyarrow, pandas and PyAV. The
format facts (file templates, column names, frame timing) are stated in
:mod:`hma.data.lerobot.format` and where they are used.
"""

from hma.data.lerobot.importer import import_lerobot
from hma.data.lerobot.reader import LeRobotSource
from hma.data.lerobot.writer import ExportReport, export_lerobot, write_lerobot_v3

__all__ = ["ExportReport", "LeRobotSource", "export_lerobot", "import_lerobot", "write_lerobot_v3"]
