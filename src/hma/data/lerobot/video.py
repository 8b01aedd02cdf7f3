"""Video in and out with PyAV: frames fetched by presentation time, CFR mp4 writing.

LeRobot addresses a frame by time, not by position (``from_timestamp + k / fps``), so
the reader checks every frame's time against that grid, and the writer gives frame k of
a file the presentation time ``k / fps`` exactly (constant frame rate, no B-frames).
Every PyAV/FFmpeg exception is turned into a :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from hma.data.lerobot.format import TOLERANCE_S, guard
from hma.errors import ConfigError, DataError

# SVT-AV1 prints a banner and tuning warnings straight to stderr unless told otherwise
# (1 = errors only); set before the first encoder is created, and only if the user has
# not chosen a level.
os.environ.setdefault("SVT_LOG", "1")

PIX_FMT = "yuv420p"


def resize(frame_hw3: np.ndarray, size: int | None) -> np.ndarray:
    """Resize an RGB frame to ``size`` x ``size`` (whole view, no crop); None keeps it."""
    if size is None or frame_hw3.shape[:2] == (size, size):
        return frame_hw3
    # PIL's bicubic filter widens with the scale factor, so downscaling is anti-aliased.
    return np.asarray(Image.fromarray(frame_hw3).resize((size, size), Image.Resampling.BICUBIC))


def decode_image(data: bytes, where: str) -> np.ndarray:
    """An encoded image (PNG, JPEG, ...) as (H, W, 3) uint8 RGB."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL reports some broken PNGs as SyntaxError
        raise DataError(f"{where}: image bytes cannot be decoded ({type(e).__name__}: {e})") from None


class VideoReader:
    """One mp4 file, read as frames at given presentation times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise DataError(f"video file {path} does not exist")
        with guard(path, "the video container"):
            self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise DataError(f"{path} has no video stream")
        self._stream = self._container.streams.video[0]

    def episode_frames(self, *, start: float, count: int, fps: float, end: float, size: int | None, what: str) -> np.ndarray:
        """The ``count`` frames at ``start + k / fps`` (k < count) as (count, H, W, 3) uint8.

        Frames presented in ``[start, end - 0.5 / fps)`` must be exactly those: a frame off
        the grid, an extra frame or a missing one means the video and the rows disagree.
        """
        frames: list[np.ndarray | None] = [None] * count
        stop = end - 0.5 / fps
        with guard(self.path, f"the frames of {what}"):
            time_base = self._stream.time_base
            target = max(0.0, start - TOLERANCE_S)
            self._container.seek(int(target / time_base), stream=self._stream, backward=True, any_frame=False)
            for frame in self._container.decode(self._stream):
                if frame.pts is None:
                    raise DataError(f"{self.path}: a frame of {what} has no presentation time, expected a timed mp4 stream")
                t = float(frame.pts * frame.time_base)
                if t < start - TOLERANCE_S:
                    continue
                if t >= stop:
                    break
                k = round((t - start) * fps)
                if abs(start + k / fps - t) > TOLERANCE_S:
                    raise DataError(
                        f"{self.path}: {what} has a frame at {t:.6f} s, expected frames at {start:.6f} s + k/{fps:g} "
                        f"(within {TOLERANCE_S:g} s)"
                    )
                if k >= count:
                    raise DataError(f"{self.path}: {what} has more video frames than its {count} data rows")
                frames[k] = resize(frame.to_ndarray(format="rgb24"), size)
        found = sum(f is not None for f in frames)
        if found != count:
            first = next(k for k, f in enumerate(frames) if f is None)
            raise DataError(
                f"{self.path}: {what} has {count} data rows but {found} video frames "
                f"(none at {start + first / fps:.6f} s): the video is truncated or does not match the rows"
            )
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise DataError(f"{self.path}: frames of {what} change size ({sorted(shapes)}), expected one size")
        return np.stack(frames)  # (count, H, W, 3)

    def close(self) -> None:
        self._container.close()


@dataclass(frozen=True)
class Encoder:
    """A resolved encoder and the options it is run with."""

    name: str  # FFmpeg encoder name, e.g. libsvtav1
    canonical: str  # stream codec name recorded in info.json, e.g. av1
    options: dict[str, str]

    @property
    def gop(self) -> int:
        return int(self.options["g"])

    @property
    def crf(self) -> int:
        return int(self.options["crf"])


def resolve_encoder(codec: str, *, crf: int | None = None, gop: int | None = None) -> Encoder:
    """Check that ``codec`` names an available video encoder and pick its settings; ``crf``
    (quality, lower is better) and ``gop`` (frames between keyframes) override the defaults."""
    for name, value, low in (("crf", crf, 0), ("gop", gop, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"--{name} {value!r} is invalid; expected an integer >= {low}")
    try:
        c = av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError):
        available = [n for n in ("libsvtav1", "libx264", "libx265", "libaom-av1") if _has_encoder(n)]
        raise ConfigError(f"video codec {codec!r} has no encoder in this PyAV build, expected one of {', '.join(available)}") from None
    if c.type != "video":
        raise ConfigError(f"codec {codec!r} is a {c.type} codec, expected a video encoder such as libsvtav1 or libx264")
    # AV1 keeps LeRobot's defaults (GOP 2, crf 30, fastest preset); the others use a
    # higher-quality crf since their crf scale is coarser at the same setting. GOP 2
    # keeps random access cheap, as LeRobot wants for training-time seeking.
    options = {"g": "2", "crf": "30"}
    if c.name == "libsvtav1":
        options["preset"] = "12"
    if c.canonical_name != "av1":
        options["crf"] = "18"
        # No B-frames: decode order equals presentation order, so k/fps timing is exact.
        options["bf"] = "0"
    if c.name == "libx265":
        options["x265-params"] = "log-level=error:bframes=0"
    if crf is not None:
        options["crf"] = str(crf)
    if gop is not None:
        options["g"] = str(gop)
    return Encoder(name=c.name, canonical=c.canonical_name, options=options)


def probe_video(path: Path) -> dict[str, Any]:
    """The stream properties LeRobot records for a video feature, read from the file as it
    does (PyAV): height, width, codec, pixel format, frame rate, channels, audio."""
    with guard(path, "the video file"), av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"video.height": stream.height, "video.width": stream.width, "video.codec": stream.codec.canonical_name,
                "video.pix_fmt": stream.pix_fmt, "video.fps": int(stream.base_rate),
                "video.channels": len(av.VideoFormat(stream.pix_fmt).components),
                "has_audio": bool(container.streams.audio)}


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


class VideoWriter:
    """One mp4 with one constant-frame-rate stream; frame n of the file is at n / fps."""

    def __init__(self, path: Path, *, encoder: Encoder, fps: int, height: int, width: int) -> None:
        self.path = path
        self.fps = fps
        self.num_frames = 0
        self.num_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # faststart puts the index first, as LeRobot's concatenated files have it.
        self._container = av.open(str(path), "w", options={"movflags": "faststart"})
        self._stream = self._container.add_stream(encoder.name, rate=fps, options=dict(encoder.options))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, PIX_FMT
        self._stream.codec_context.time_base = Fraction(1, fps)
        if encoder.canonical != "av1":
            self._stream.codec_context.max_b_frames = 0

    def write(self, frames_thw3: np.ndarray) -> None:
        for frame_hw3 in frames_thw3:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_hw3), format="rgb24")
            frame.pts = self.num_frames
            frame.time_base = Fraction(1, self.fps)
            self._mux(self._stream.encode(frame))
            self.num_frames += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.num_bytes += packet.size
            self._container.mux(packet)

    def close(self) -> None:
        self._mux(self._stream.encode(None))
        self._container.close()
