"""``hma play``: drive the world model with the keyboard in a browser.

A stdlib HTTP server holds one :class:`~hma.envs.WorldModelEnv`; a small page
(``static/play.html``) sends the held keys with every ``POST /step`` and shows the frame
it gets back. The browser paces the loop (one request per generated frame), so the video
runs as fast as the model generates and the server needs no threads or locks. Paused, each
key press steps exactly one frame.

With no key held a robot whose action is a target position (pusht) stays where it is,
any other gets the zero action (:mod:`hma.envs.keys`).

Endpoints: ``GET /`` page, ``GET /frame.png`` current frame, ``GET /state`` JSON,
``POST /step`` ``{"keys": [...]}`` (or ``{"action": [...]}``, one action of ``action_dim``
or ``chunk * action_dim`` numbers, for scripts), ``POST /reset``, ``POST /record``
(start/stop; stopping writes a GIF or MP4 with imageio and returns its path, or the error
that kept it from being written). A malformed request is answered 400 with a one-line
``{"error": ...}``.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from gymnasium import spaces

from hma.envs.actions import chunk_shape
from hma.envs.env import WorldModelEnv
from hma.envs.keys import (POSITION_CONTROL, Idle, KeyBinding, default_keymap, keys_to_action, load_keymap,
                           resolve_idle)
from hma.errors import ConfigError, HmaError
from hma.io import atomic_write_bytes
from hma.run import RunLike

__all__ = ["KeyBinding", "PlayServer", "PlaySession", "default_keymap", "keys_to_action", "load_keymap",
           "make_play_server"]

_DISPLAY_SIZE = 256  # frames are upscaled (nearest) to about this size for the page and recordings


def upscale(frame: np.ndarray, size: int = _DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor (sharp pixels, even sizes for video codecs)."""
    factor = max(1, size // max(frame.shape[:2]))
    factor += factor % 2 if (frame.shape[0] * factor) % 2 else 0
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


class PlaySession:
    """The env, the key map, the current frame and an optional recording.

    ``idle`` (:class:`hma.envs.keys.Idle`) says what the action is with no key held; for a
    robot that holds its position, :attr:`held` (A,) is the target it stays at: where the
    robot is after a reset, then the last action's target.
    """

    def __init__(self, env: WorldModelEnv, keymap: dict[str, KeyBinding], *, seed: int = 0,
                 record_dir: str | Path = ".", record_format: str = "gif", idle: Idle | str = Idle.AUTO) -> None:
        if record_format not in ("gif", "mp4"):
            raise ConfigError(f"record format {record_format!r} is unsupported, expected 'gif' or 'mp4'")
        self.env = env
        self.keymap = keymap
        self.seed = seed
        self.idle = resolve_idle(idle, env.embodiment)
        self.record_dir = Path(record_dir)
        self.record_format = record_format
        self.recording: list[np.ndarray] | None = None
        self.reset()

    def reset(self) -> None:
        """Back to the same context and random stream: a reset replays identically."""
        self.frame, _ = self.env.reset(seed=self.seed)
        self.step_count = 0
        self.held = self._position() if self.idle is Idle.HOLD else None
        self.last_action = keys_to_action([], self.keymap, self.env.action_space, held=self.held)
        if self.recording is not None:
            self.recording = [self.frame]

    def _position(self) -> np.ndarray:
        """Where the robot is, as a target (A,): the position its state records or reads out (a
        robot of POSITION_CONTROL), else the last context action, else the middle of the bounds."""
        rollout, space = self.env.core.rollout, self.env.action_space
        shape = chunk_shape(space)
        control, names = POSITION_CONTROL.get(self.env.embodiment), rollout.state_names
        if control is not None and rollout.states is not None and set(control.state_names) <= set(names):
            return rollout.states[0, [names.index(n) for n in control.state_names]].astype(np.float32)
        if rollout.actions is not None:
            return rollout.actions[0].reshape(shape)[-1]
        return ((space.low + space.high) / 2).reshape(shape)[0]

    def step(self, keys: list[str]) -> None:
        """One frame with the held keys."""
        self.act(keys_to_action(keys, self.keymap, self.env.action_space, held=self.held))

    def act(self, action: np.ndarray) -> None:
        """One frame with ``action`` (the Box's shape; clipped into it); a robot that holds its
        position then stays at this action's target."""
        space = self.env.action_space
        self.last_action = np.clip(action, space.low, space.high).astype(np.float32)
        self.frame, _, _, truncated, _ = self.env.step(self.last_action)
        self.step_count += 1
        if self.held is not None:
            self.held = self.last_action.reshape(chunk_shape(space))[-1].copy()
        if self.recording is not None:
            self.recording.append(self.frame)
        if truncated:
            self.reset()

    def toggle_recording(self) -> str | None:
        """Start recording, or stop and write the file; returns the path written on stop.

        A file that cannot be written raises a ConfigError naming it, and the recording goes
        on: nothing is lost, and stopping again retries (e.g. once the folder is writable)."""
        if self.recording is None:
            self.recording = [self.frame]
            return None
        frames = np.stack([upscale(f) for f in self.recording])  # (T, H', W', 3)
        path = self.record_dir / f"hma-play-{time.strftime('%Y%m%d-%H%M%S')}.{self.record_format}"
        fps = self.env.metadata["render_fps"]
        try:
            if self.record_format == "gif":
                data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)
            else:
                data = iio.imwrite("<bytes>", frames, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
            atomic_write_bytes(path, data)
        except (OSError, RuntimeError, ValueError) as e:
            reason = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"the recording could not be written to {path} ({reason}); it goes on: "
                              "expected a writable --record-dir, stop it again to retry") from None
        self.recording = None
        return str(path)

    def state(self) -> dict[str, Any]:
        states = self.env.core.rollout.states
        return {
            "embodiment": self.env.embodiment,
            "step": self.step_count,
            "recording": self.recording is not None,
            "action": self.last_action.tolist(),
            "idle": self.idle.value,
            "state": None if states is None else states[0].tolist(),
            "keymap": {k: {"dim": b.dim, "value": b.value} for k, b in self.keymap.items()},
            "action_names": list(self.env.core.rollout.spec.action_names),
            "fps": self.env.metadata["render_fps"],
        }

    def frame_png(self) -> bytes:
        return iio.imwrite("<bytes>", upscale(self.frame), extension=".png")


def _page() -> bytes:
    return resources.files("hma.envs").joinpath("static/play.html").read_bytes()


class BadRequest(Exception):
    """A request the play server cannot take: answered 400 with this one-line message."""


_MAX_BODY = 1 << 16  # bytes; a step request is a few dozen
_FIELDS = {"/step": ("keys", "action"), "/reset": (), "/record": ()}


def _refuse_constant(name: str) -> None:
    raise BadRequest(f"request body holds {name}, expected finite numbers")


def parse_body(raw: bytes, path: str) -> dict[str, Any]:
    """The JSON object of a POST to ``path`` (empty: {}); BadRequest for anything else."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as e:
        raise BadRequest(f"request body is not JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body is a JSON {type(body).__name__}, expected an object")
    unknown = sorted(set(body) - set(_FIELDS[path]))
    if unknown:
        expected = " or ".join(repr(f) for f in _FIELDS[path]) or "no fields"
        raise BadRequest(f"{path} got the field {unknown[0]!r}, expected {expected}")
    if "keys" in body and "action" in body:
        raise BadRequest(f"{path} got both keys and action, expected one of them")
    keys = body.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadRequest(f"keys {keys!r} must be a list of key names")
    return body


def parse_action(value: Any, space: spaces.Box) -> np.ndarray:
    """A step request's ``action``: ``action_dim`` numbers (held over the chunk) or a whole
    chunk of ``chunk * action_dim``, all finite; returned in the Box's shape."""
    chunk, action_dim = chunk_shape(space)
    expected = f"{action_dim} numbers (one per action dim)" + (f" or {chunk * action_dim} (a chunk)" if chunk > 1 else "")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"action {str(value)[:60]} is not a list of numbers, expected {expected}") from None
    if arr.ndim > 2 or arr.size not in (action_dim, chunk * action_dim):
        raise BadRequest(f"action has {arr.size} numbers, expected {expected}")
    if not np.isfinite(arr).all() or (np.abs(arr) > np.finfo(np.float32).max).any():
        raise BadRequest(f"action holds {arr.reshape(-1)[~(np.abs(arr.reshape(-1)) <= np.finfo(np.float32).max)][0]}, "
                         "expected finite numbers")
    arr = np.tile(arr.reshape(-1), chunk) if arr.size == action_dim else arr
    return arr.reshape(space.shape).astype(np.float32)


def answer_post(session: PlaySession, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The JSON answer and HTTP status of a parsed POST."""
    if path == "/step":
        if "action" in body:
            session.act(parse_action(body["action"], session.env.action_space))
        else:
            session.step(body.get("keys", []))
        return session.state(), 200
    if path == "/reset":
        session.reset()
        return session.state(), 200
    try:
        written = session.toggle_recording()
    except ConfigError as e:
        return {**session.state(), "error": str(e)}, 500
    return {**session.state(), "written": written}, 200


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

    def _failed(self, e: Exception) -> None:
        """An unexpected error: one line on the terminal and in a 500 answer, the server goes on."""
        message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"hma play: error: {self.command} {self.path}: {message}", file=sys.stderr, flush=True)
        self._json({"error": f"the server failed: {message}"}, 500)

    def do_GET(self) -> None:
        session = self.server.session
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                self._send(_page(), "text/html; charset=utf-8")
            elif path == "/frame.png":
                self._send(session.frame_png(), "image/png")
            elif path == "/state":
                self._json(session.state())
            else:
                self._json({"error": f"no page {path}"}, 404)
        except Exception as e:  # answered in one line, not a dropped connection
            self._failed(e)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in _FIELDS:
            return self._json({"error": f"no endpoint {path}"}, 404)
        try:
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit() or int(length) > _MAX_BODY:
                raise BadRequest(f"Content-Length {length!r} is invalid, expected 0 to {_MAX_BODY} bytes")
            self._json(*answer_post(self.server.session, path, parse_body(self.rfile.read(int(length)), path)))
        except (BadRequest, HmaError) as e:
            self._json({"error": str(e)}, 400)
        except Exception as e:  # answered in one line, not a dropped connection
            self._failed(e)


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
                     env: WorldModelEnv | None = None, device: str | None = None,
                     idle: Idle | str = Idle.AUTO) -> PlayServer:
    """Build the env (unless given), the key map and the server; ``port=0`` picks a free port.
    ``idle``: what the action is with no key held (:class:`hma.envs.keys.Idle`)."""
    env = env or WorldModelEnv(run, embodiment, dataset=dataset, max_episode_steps=max_episode_steps, device=device)
    action_dim = chunk_shape(env.action_space)[1]
    control = POSITION_CONTROL.get(env.embodiment)
    keys = load_keymap(keymap, action_dim) if keymap is not None else \
        default_keymap(action_dim, screen_down=control.screen_down if control is not None else ())
    session = PlaySession(env, keys, seed=seed, record_dir=record_dir, record_format=record_format, idle=idle)
    return PlayServer(session, host, port)
