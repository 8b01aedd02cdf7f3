"""``hma data info`` and ``hma data preview``: a table of datasets and a contact sheet."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from hma.data.store import open_datasets
from hma.errors import ConfigError
from hma.io import atomic_write_bytes


def info_table(paths: Sequence[str | Path], verify: bool = False) -> str:
    """One row per dataset: embodiment, simulator, action_dim, Hz, episodes, frames, image, success."""
    stores = open_datasets(paths, verify=verify)
    header = ["embodiment", "simulator", "action_dim", "Hz", "episodes", "frames", "image", "success"]
    rows = [header]
    for s in stores:
        success = f"{float(np.asarray(s.success).mean()):.0%}" if s.success is not None else "-"
        rows.append([
            s.embodiment, s.simulator, str(s.action_dim), f"{s.control_hz:g}", str(s.num_episodes),
            str(s.num_frames), "x".join(map(str, s.image_size)), success,
        ])
    rows.append(["total", "", "", "", str(sum(s.num_episodes for s in stores)), str(sum(s.num_frames for s in stores)), "", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    # Text columns left-aligned, numbers right-aligned, as a reader scans them.
    left = {0, 1}
    lines = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def preview(paths: Sequence[str | Path], out_png: str | Path, frames_per_embodiment: int = 8) -> None:
    """A PNG with one row per dataset: ``frames_per_embodiment`` frames spread evenly over its first episode."""
    if frames_per_embodiment < 1:
        raise ConfigError(f"--frames {frames_per_embodiment} is invalid; expected a positive number")
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    stores = open_datasets(paths)
    n = frames_per_embodiment
    fig, axes = plt.subplots(len(stores), 1, figsize=(1.1 * n, 1.4 * len(stores)), squeeze=False)
    for ax, s in zip(axes[:, 0], stores):
        frames = s.episode(0)["frames"]  # (T, H, W, 3)
        picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
        ax.imshow(np.concatenate([frames[i] for i in picks], axis=1), interpolation="nearest")  # (H, n*W, 3)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{s.embodiment}  ({s.simulator}, {s.action_dim}-D actions, {s.control_hz:g} Hz)", loc="left", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
