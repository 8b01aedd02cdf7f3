"""The GIFs of an evaluation: real beside generated frames, and the same start under two action
sequences, each with its panels named in a label strip drawn into the frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hma.io import atomic_write_bytes

MIN_PANEL_HEIGHT = 128  # pixels: small simulator frames are upscaled to at least this, so they can be seen
PANEL_GAP = 2  # white pixels between two panels
ROW_GAP = 6  # white pixels between the two rows of a counterfactual GIF
LABEL_HEIGHT = 16  # pixels of a label strip
LABEL_FONT_SIZE = 12  # of PIL's default font: readable over a panel of MIN_PANEL_HEIGHT
WHITE, ROW_SHADE, INK = (255, 255, 255), (228, 228, 228), (0, 0, 0)


def side_by_side_gif(real: np.ndarray, generated: Mapping[str, np.ndarray], path: Path, *, context: int,
                     fps: float = 4.0, real_label: str = "real") -> None:
    """GIF of real frames (L, H, W, 3) beside each generated sequence of the same length, each
    panel named above it (``real_label``, then the keys of ``generated``).

    Context frames (copied from the real clip) get a grey bar under them, generated frames a
    red one, so a viewer can tell where generation starts.
    """
    panels = _panels(real, generated, context=context)  # (L, H', W', 3)
    width = (panels.shape[2] - PANEL_GAP * len(generated)) // (len(generated) + 1)
    strip = label_strip([real_label, *generated], width)
    _write_gif(_stack(strip, panels), path, fps=fps)


def counterfactual_gif(shown: Mapping[str, Any], path: Path, *, context: int, fps: float = 4.0) -> None:
    """Two rows from the same start: simulator beside model under the true actions (top) and
    under the other actions (bottom), under a header "simulator | model" and each row named."""
    top = _panels(shown["simulator, true actions"], {"model": shown["model, true actions"]}, context=context)
    bottom = _panels(shown["simulator, other actions"], {"model": shown["model, other actions"]}, context=context)
    width, full = (top.shape[2] - PANEL_GAP) // 2, top.shape[2]
    gap = np.full((ROW_GAP, full, 3), 255, dtype=np.uint8)
    frames = _stack(label_strip(["simulator", "model"], width), label_strip(["true actions"], full, fill=ROW_SHADE),
                    top, gap, label_strip(["other actions"], full, fill=ROW_SHADE), bottom)
    _write_gif(frames, path, fps=fps)


def label_strip(labels: Sequence[str], width: int, *, gap: int = PANEL_GAP,
                fill: tuple[int, int, int] = WHITE) -> np.ndarray:
    """(LABEL_HEIGHT, W, 3) uint8: each label centred over its panel of ``width`` pixels, panels ``gap``
    apart. A label wider than its panel is cut at the panel's right edge, never drawn over the next one."""
    from PIL import Image, ImageDraw

    font = _font()
    cells = []
    for text in labels:
        cell = Image.new("RGB", (width, LABEL_HEIGHT), fill)
        draw = ImageDraw.Draw(cell)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = max(0, (width - (right - left)) // 2) - left
        draw.text((x, (LABEL_HEIGHT - (bottom - top)) // 2 - top), text, fill=INK, font=font)
        cells += [np.asarray(cell), np.full((LABEL_HEIGHT, gap, 3), 255, dtype=np.uint8)]
    return np.concatenate(cells[:-1], axis=1)


@lru_cache(maxsize=1)
def _font():
    """PIL's own default font (no font file to fetch), at LABEL_FONT_SIZE where this Pillow scales it."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=LABEL_FONT_SIZE)
    except TypeError:  # Pillow < 10.1: only the fixed bitmap font, about 11 pixels high
        return ImageFont.load_default()


def _stack(*parts: np.ndarray) -> np.ndarray:
    """Stack (L, h, W, 3) frames and (h, W, 3) strips (the same in every frame) top to bottom."""
    length = next(p.shape[0] for p in parts if p.ndim == 4)
    return np.concatenate([p if p.ndim == 4 else np.broadcast_to(p, (length, *p.shape)) for p in parts], axis=1)


def _write_gif(frames: np.ndarray, path: Path, *, fps: float) -> None:
    import imageio.v3 as iio

    atomic_write_bytes(path, iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0))


def _panels(real: np.ndarray, generated: Mapping[str, np.ndarray], *, context: int) -> np.ndarray:
    """Frames (L, H', W', 3): the real panel and the generated ones side by side, each over its bar."""
    scale = max(1, MIN_PANEL_HEIGHT // real.shape[1])
    panels = [real, *generated.values()]
    frames = []
    for t in range(real.shape[0]):
        row = []
        for k, panel in enumerate(panels):
            img = panel[t].repeat(scale, 0).repeat(scale, 1)  # (H*s, W*s, 3)
            bar = np.zeros((4, img.shape[1], 3), dtype=np.uint8)
            bar[:] = (128, 128, 128) if (k == 0 or t < context) else (220, 40, 40)
            row.append(np.concatenate([img, bar]))
            row.append(np.full((row[-1].shape[0], PANEL_GAP, 3), 255, dtype=np.uint8))
        frames.append(np.concatenate(row[:-1], axis=1))
    return np.stack(frames)
