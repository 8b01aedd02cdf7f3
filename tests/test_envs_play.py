"""`hma play`: key maps, the HTTP endpoints, and the page in headless Chromium."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import imageio.v3 as iio
import numpy as np
import pytest

from _helpers_browser import CHROMIUM, Browser
from _helpers_envs import CHUNK, EMBODIMENT, make_run, make_store
from hma.run.pretrained import DEFAULT_RUN, PRETRAINED_DIR
from hma.errors import ConfigError
from hma.sampling.maskgit import MaskGITSampling
from hma.envs import WorldModelEnv
from hma.envs.keys import HOLD_SPEED, Idle
from hma.envs.play import PlayServer, default_keymap, keys_to_action, load_keymap, make_play_server


pytestmark = pytest.mark.usefixtures("single_thread")


def _serve(srv: PlayServer):
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return srv


def _stop(srv: PlayServer) -> None:
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    run = make_run(make_store(root / "toy"))
    # Greedy sampling: a frame is a function of the state and the action alone.
    env = WorldModelEnv(run, EMBODIMENT, sampling=MaskGITSampling(temperature=0.0))
    srv = _serve(make_play_server(run, EMBODIMENT, port=0, env=env, record_dir=root, seed=0))
    yield srv
    _stop(srv)


def _get(srv, path: str) -> bytes:
    with urllib.request.urlopen(srv.url.rstrip("/") + path, timeout=30) as r:
        return r.read()


def _post(srv, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=json.dumps(body or {}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _post_raw(srv, path: str, data: bytes) -> tuple[int, dict]:
    """Status and JSON answer of a POST of ``data`` as it is, errors included."""
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_default_keymap_and_actions():
    keymap = default_keymap(4)
    assert keymap["ArrowRight"].dim == 0 and keymap["d"].value == 1.0 and keymap["q"].dim == 2
    from gymnasium import spaces
    space = spaces.Box(np.array([[-1, 0, -2, 0]] * CHUNK, np.float32), np.array([[1, 2, 2, 1]] * CHUNK, np.float32))
    action = keys_to_action(["ArrowLeft", "ArrowUp"], keymap, space)
    assert action.shape == (CHUNK, 4)
    np.testing.assert_allclose(action[0], [-1, 2, 0, 0])


def test_keymap_file_is_checked(tmp_path):
    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"j": {"dim": 1, "value": -0.5}}))
    assert load_keymap(good, 2)["j"].value == -0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"j": {"dim": 5, "value": 1}}))
    with pytest.raises(ConfigError, match="expected dim in 0..1"):
        load_keymap(bad, 2)


def test_endpoints_step_reset_and_record(server):
    _post(server, "/reset")
    state = _post(server, "/step", {"keys": ["ArrowRight"]})
    assert state["step"] == 1 and state["action"][0][0] > 0
    png = iio.imread(_get(server, "/frame.png"))
    assert png.ndim == 3 and png.shape[0] >= 128
    assert _post(server, "/record")["recording"]
    _post(server, "/step", {"keys": []})
    written = _post(server, "/record")["written"]
    frames = iio.imread(written, index=None)
    assert len(frames) == 2
    assert _post(server, "/reset")["step"] == 0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; CI installs it)")
def test_key_press_in_browser_changes_next_frame(server):
    with Browser(server.url + "?paused") as page:
        page.wait_for("document.body.dataset.ready === '1'")
        # Paused: the step button steps once with no key held (the neutral action).
        page.eval("document.getElementById('reset').click()")
        page.wait_for("document.body.dataset.step === '0'")
        page.eval("document.getElementById('step').click()")
        page.wait_for("document.body.dataset.step === '1'")
        neutral = iio.imread(_get(server, "/frame.png"))
        # Same state again, then a real key press through the page's keyboard handler.
        page.eval("document.getElementById('reset').click()")
        page.wait_for("document.body.dataset.step === '0'")
        page.press("ArrowRight")
        page.wait_for("document.body.dataset.step === '1'")
        pushed = iio.imread(_get(server, "/frame.png"))
        state = json.loads(_get(server, "/state"))
        assert state["action"][0][0] > 0  # ArrowRight moved action[0] up
        assert (neutral != pushed).any()
        # And the page shows the new frame.
        assert page.wait_for("document.getElementById('frame').complete && document.getElementById('frame').naturalWidth > 0")


def test_held_keys_move_a_held_target_and_no_key_keeps_it():
    from gymnasium import spaces

    space = spaces.Box(np.zeros(2, np.float32), np.full(2, 512.0, np.float32))  # pusht's: one control step per frame
    keymap = default_keymap(2, screen_down=(1,))  # y grows down the image: the up arrow lowers it
    held = np.array([100.0, 200.0])
    still = keys_to_action([], keymap, space, held=held)
    assert still.shape == (2,) and still.dtype == np.float32
    np.testing.assert_allclose(still, held)  # no key: stay, not 0 (the corner)
    np.testing.assert_allclose(keys_to_action(["ArrowUp"], keymap, space, held=held), [100, 200 - HOLD_SPEED * 512])
    np.testing.assert_allclose(keys_to_action(["d"], keymap, space, held=held), [100 + HOLD_SPEED * 512, 200])
    np.testing.assert_allclose(keys_to_action(["ArrowLeft"], keymap, space, held=[3.0, 5.0]), [0, 5])  # clipped
    np.testing.assert_allclose(keys_to_action([], keymap, space), [0, 0])  # without a held target: the zero action


@pytest.mark.skipif(not (PRETRAINED_DIR / DEFAULT_RUN).exists(), reason=f"{DEFAULT_RUN} is not shipped in this tree")
def test_no_key_keeps_the_shipped_pusht_pusher_still():
    """`hma play --embodiment pusht`: the action is the pusher's target position, so no key
    holds it where it is (the zero action would drive it to the corner)."""
    import hma

    run = hma.load()
    srv = _serve(make_play_server(run, "pusht", port=0, dataset=run.path / "starts" / "pusht"))
    try:
        start = _post(srv, "/reset")
        assert start["idle"] == "hold" and len(start["action"]) == 2  # a Box of (action_dim,)
        np.testing.assert_allclose(start["action"], start["state"], atol=1e-4)  # the target is the pusher's position
        for _ in range(6):
            still = _post(srv, "/step", {"keys": []})
            np.testing.assert_allclose(still["action"], start["action"], atol=1e-4)  # what the model is sent
        _post(srv, "/reset")
        for _ in range(6):
            zero = _post(srv, "/step", {"action": [0, 0]})  # what no key used to send
        start_xy, still_xy, zero_xy = (np.asarray(s["state"]) for s in (start, still, zero))
        # The pusher the model reads out of its own frames stays near its start; sent to 0 it leaves for the corner.
        assert np.linalg.norm(still_xy - start_xy) < 0.5 * np.linalg.norm(zero_xy - start_xy), (start_xy, still_xy, zero_xy)
        # Keys move the target from where it is held, and it stays there once they are released.
        _post(srv, "/reset")
        up = _post(srv, "/step", {"keys": ["ArrowUp"]})["action"]
        assert up[0] == pytest.approx(start["action"][0]) and up[1] < start["action"][1]  # up the image: y falls
        np.testing.assert_allclose(_post(srv, "/step", {"keys": []})["action"], up)
    finally:
        _stop(srv)


def test_idle_hold_without_a_known_position_holds_the_last_context_action(server):
    """`--idle hold` for a robot hma does not know to be position-controlled: the last
    control step of the context's last action chunk, the same at every step of the chunk."""
    session = server.session
    store = session.env.core.store
    try:
        session.idle = Idle.HOLD
        _post(server, "/reset")  # the held-out episode (the last), from its first frame
        last = np.asarray(store.episode(store.num_episodes - 1)["actions"][CHUNK - 1])
        for _ in range(3):
            action = np.asarray(_post(server, "/step", {"keys": []})["action"])
            np.testing.assert_allclose(action, np.tile(last, (CHUNK, 1)), atol=1e-6)
    finally:
        session.idle = Idle.ZERO
        _post(server, "/reset")


@pytest.mark.parametrize("path, data, message", [
    ("/step", b"{not json", "request body is not JSON"),
    ("/step", b"[1, 2]", "request body is a JSON list, expected an object"),
    ("/step", b'{"keys": "ArrowUp"}', "must be a list of key names"),
    ("/step", b'{"speed": 3}', "/step got the field 'speed', expected 'keys' or 'action'"),
    ("/step", b'{"keys": [], "action": [1, 2]}', "got both keys and action"),
    ("/step", b'{"action": [1, 2, 3]}', "action has 3 numbers, expected 2 numbers (one per action dim) or 4 (a chunk)"),
    ("/step", b'{"action": ["left", 1]}', "is not a list of numbers"),
    ("/step", b'{"action": [NaN, 1]}', "request body holds NaN, expected finite numbers"),
    ("/step", b'{"action": [1e999, 1]}', "action holds inf, expected finite numbers"),
    ("/step", b"\xff\xfe", "request body is not JSON"),
    ("/reset", b'{"seed": 1}', "/reset got the field 'seed', expected no fields"),
])
def test_malformed_requests_are_answered_400_with_one_line(server, path, data, message):
    before = _post(server, "/reset")["step"]
    status, answer = _post_raw(server, path, data)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"], answer
    assert json.loads(_get(server, "/state"))["step"] == before  # nothing stepped, and the server answers on


def test_a_step_may_send_an_action(server):
    _post(server, "/reset")
    state = _post(server, "/step", {"action": [1.5, -1]})
    assert state["step"] == 1
    np.testing.assert_allclose(state["action"], [[1.5, -1]] * CHUNK)


def test_a_recording_that_cannot_be_written_is_reported_and_kept(server, tmp_path):
    session = server.session
    writable = session.record_dir
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the recordings' folder should be")
    try:
        session.record_dir = blocker
        _post(server, "/reset")
        assert _post(server, "/record")["recording"]
        _post(server, "/step", {"keys": []})
        status, answer = _post_raw(server, "/record", b"")
        assert status == 500 and answer["error"].startswith(f"the recording could not be written to {blocker}/hma-play-")
        assert answer["recording"] and "\n" not in answer["error"]  # still recording: nothing lost
        session.record_dir = tmp_path / "recordings"
        written = _post(server, "/record")["written"]  # stopping again writes it
        assert len(iio.imread(written, index=None)) == 2
    finally:
        session.record_dir = writable
        session.recording = None


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; CI installs it)")
def test_the_page_shows_a_recording_error(server, tmp_path):
    session = server.session
    writable = session.record_dir
    (tmp_path / "file").write_text("not a folder")
    try:
        session.record_dir = tmp_path / "file"
        with Browser(server.url + "?paused") as page:
            page.wait_for("document.body.dataset.ready === '1'")
            page.eval("document.getElementById('record').click()")
            page.wait_for("document.getElementById('status').textContent.includes('recording')")
            page.eval("document.getElementById('record').click()")
            shown = page.wait_for("document.getElementById('message').textContent")
            assert shown.startswith("error: the recording could not be written to ") and "record-dir" in shown
    finally:
        session.record_dir = writable
        session.recording = None
