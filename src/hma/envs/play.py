"""``hma play``: drive the world model with the keyboard in a browser.

A stdlib HTTP server holds one :class:`~hma.envs.WorldModelEnv`; a small page
(``static/play.html``) sends the held keys with every ``POST /step`` and shows the frame
it gets back. The browser paces the loop (one request per generated frame), so the video
runs as fast as the model generates and the server needs no threads or locks. Paused, each
key press steps exactly one frame.

Endpoints: ``GET /`` page, ``GET /frame.png`` current frame, ``GET /state`` JSON,
``POST /step`` ``{"keys": [...]}``, ``POST /reset``, ``POST /record`` (start/stop; stopping
writes a GIF or MP4 with imageio and returns its path).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from gymnasium import spaces

from hma.errors import ConfigError
from hma.io import atomic_write_bytes, read_json
from hma.envs.env import WorldModelEnv
from hma.run import RunLike

# Keys in the order dimensions get them: (increase, decrease) pairs, as KeyboardEvent.key names.
_DEFAULT_KEY_PAIRS = [("ArrowRight", "ArrowLeft"), ("ArrowUp", "ArrowDown"), ("e", "q"), ("x", "z"),
                      ("l", "j"), ("i", "k"), ("o", "u"), ("m", "n")]
_ALIASES = {"ArrowRight": "d", "ArrowLeft": "a", "ArrowUp": "w", "ArrowDown": "s"}
_DISPLAY_SIZE = 256  # frames are upscaled (nearest) to about this size for the page and recordings


@dataclass(frozen=True)
class KeyBinding:
    dim: int  # action dimension the key moves
    value: float  # in [-1, 1]: fraction of the way from the neutral action to the bound


def default_keymap(action_dim: int) -> dict[str, KeyBinding]:
    """Arrows (and WASD) for the first two action dims, then one key pair per further dim."""
    keymap: dict[str, KeyBinding] = {}
    for dim, (up, down) in enumerate(_DEFAULT_KEY_PAIRS[:action_dim]):
        for key, value in ((up, 1.0), (down, -1.0)):
            keymap[key] = KeyBinding(dim, value)
            if key in _ALIASES:
                keymap[_ALIASES[key]] = KeyBinding(dim, value)
    return keymap


def load_keymap(path: str | Path, action_dim: int) -> dict[str, KeyBinding]:
    """A JSON object ``{"ArrowUp": {"dim": 1, "value": 1.0}, ...}`` (KeyboardEvent.key names)."""
    raw = read_json(path, "key map")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"key map {path} must be a non-empty JSON object of key -> {{\"dim\": int, \"value\": float}}")
    keymap = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("dim"), int) or not isinstance(spec.get("value"), (int, float)):
            raise ConfigError(f"key map {path}: entry {key!r} is {spec!r}, expected {{\"dim\": int, \"value\": float}}")
        if not 0 <= spec["dim"] < action_dim or not -1.0 <= spec["value"] <= 1.0:
            raise ConfigError(f"key map {path}: entry {key!r} has dim {spec['dim']} / value {spec['value']}, "
                              f"expected dim in 0..{action_dim - 1} and value in [-1, 1]")
        keymap[key] = KeyBinding(spec["dim"], float(spec["value"]))
    return keymap


def keys_to_action(keys: list[str], keymap: dict[str, KeyBinding], space: spaces.Box) -> np.ndarray:
    """Held keys -> an action chunk (chunk, A): the neutral action (0 clipped into the
    bounds), moved towards a bound on each held key's dimension, the same at every control step."""
    low, high = space.low[0], space.high[0]  # (A,)
    neutral = np.clip(0.0, low, high)
    action = neutral.copy()
    for key in keys:
        binding = keymap.get(key)
        if binding is None:
            continue
        d, v = binding.dim, binding.value
        action[d] = neutral[d] + v * ((high[d] - neutral[d]) if v > 0 else (neutral[d] - low[d]))
    return np.tile(action, (space.shape[0], 1)).astype(np.float32)


def upscale(frame: np.ndarray, size: int = _DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor (sharp pixels, even sizes for video codecs)."""
    factor = max(1, size // max(frame.shape[:2]))
    factor += factor % 2 if (frame.shape[0] * factor) % 2 else 0
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


class PlaySession:
    """The env, the key map, the current frame and an optional recording."""

    def __init__(self, env: WorldModelEnv, keymap: dict[str, KeyBinding], *, seed: int = 0,
                 record_dir: str | Path = ".", record_format: str = "gif") -> None:
        if record_format not in ("gif", "mp4"):
            raise ConfigError(f"record format {record_format!r} is unsupported, expected 'gif' or 'mp4'")
        self.env = env
        self.keymap = keymap
        self.seed = seed
        self.record_dir = Path(record_dir)
        self.record_format = record_format
        self.recording: list[np.ndarray] | None = None
        self.last_action = keys_to_action([], keymap, env.action_space)
        self.step_count = 0
        self.frame, _ = env.reset(seed=seed)

    def reset(self) -> None:
        """Back to the same context and random stream: a reset replays identically."""
        self.frame, _ = self.env.reset(seed=self.seed)
        self.step_count = 0
        if self.recording is not None:
            self.recording = [self.frame]

    def step(self, keys: list[str]) -> None:
        self.last_action = keys_to_action(keys, self.keymap, self.env.action_space)
        self.frame, _, _, truncated, _ = self.env.step(self.last_action)
        self.step_count += 1
        if self.recording is not None:
            self.recording.append(self.frame)
        if truncated:
            self.reset()

    def toggle_recording(self) -> str | None:
        """Start recording, or stop and write the file; returns the path written on stop."""
        if self.recording is None:
            self.recording = [self.frame]
            return None
        frames = np.stack([upscale(f) for f in self.recording])  # (T, H', W', 3)
        self.recording = None
        path = self.record_dir / f"hma-play-{time.strftime('%Y%m%d-%H%M%S')}.{self.record_format}"
        fps = self.env.metadata["render_fps"]
        if self.record_format == "gif":
            data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)
        else:
            data = iio.imwrite("<bytes>", frames, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
        atomic_write_bytes(path, data)
        return str(path)

    def state(self) -> dict[str, Any]:
        return {
            "embodiment": self.env.embodiment,
            "step": self.step_count,
            "recording": self.recording is not None,
            "action": self.last_action.tolist(),
            "keymap": {k: {"dim": b.dim, "value": b.value} for k, b in self.keymap.items()},
            "action_names": list(self.env.core.rollout.spec.action_names),
            "fps": self.env.metadata["render_fps"],
        }

    def frame_png(self) -> bytes:
        return iio.imwrite("<bytes>", upscale(self.frame), extension=".png")


def _page() -> bytes:
    return resources.files("hma.envs").joinpath("static/play.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: "PlayServer"

    def log_message(self, format: str, *args: Any) -> None:  # keep the terminal for the URL and errors
        pass

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(json.dumps(obj).encode(), "application/json", status)

    def do_GET(self) -> None:
        session = self.server.session
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(_page(), "text/html; charset=utf-8")
        elif path == "/frame.png":
            self._send(session.frame_png(), "image/png")
        elif path == "/state":
            self._json(session.state())
        else:
            self._json({"error": f"no page {path}"}, 404)

    def do_POST(self) -> None:
        session = self.server.session
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self._json({"error": "request body is not JSON"}, 400)
        path = self.path.split("?", 1)[0]
        if path == "/step":
            keys = body.get("keys", [])
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                return self._json({"error": f"keys {keys!r} must be a list of key names"}, 400)
            session.step(keys)
            self._json(session.state())
        elif path == "/reset":
            session.reset()
            self._json(session.state())
        elif path == "/record":
            written = session.toggle_recording()
            self._json({**session.state(), "written": written})
        else:
            self._json({"error": f"no endpoint {path}"}, 404)


class PlayServer(HTTPServer):
    """One request at a time: each step finishes before the next frame is asked for."""

    def __init__(self, session: PlaySession, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.session = session
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_play_server(run: RunLike, embodiment: str, *, port: int = 8000, host: str = "127.0.0.1",
                     keymap: str | Path | None = None, dataset: str | Path | None = None, seed: int = 0,
                     max_episode_steps: int = 1000, record_dir: str | Path = ".", record_format: str = "gif",
                     env: WorldModelEnv | None = None, device: str | None = None) -> PlayServer:
    """Build the env (unless given), the key map and the server; ``port=0`` picks a free port."""
    env = env or WorldModelEnv(run, embodiment, dataset=dataset, max_episode_steps=max_episode_steps, device=device)
    action_dim = env.action_space.shape[1]
    keys = load_keymap(keymap, action_dim) if keymap is not None else default_keymap(action_dim)
    session = PlaySession(env, keys, seed=seed, record_dir=record_dir, record_format=record_format)
    return PlayServer(session, host, port)
