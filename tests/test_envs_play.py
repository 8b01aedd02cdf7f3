"""`hma play`: key maps, the HTTP endpoints, and the page in headless Chromium."""

from __future__ import annotations

import json
import threading
import urllib.request

import imageio.v3 as iio
import numpy as np
import pytest

from _helpers_browser import CHROMIUM, Browser
from _helpers_envs import CHUNK, EMBODIMENT, make_run, make_store
from hma.errors import ConfigError
from hma.sampling.maskgit import MaskGITSampling
from hma.envs import WorldModelEnv
from hma.envs.play import default_keymap, keys_to_action, load_keymap, make_play_server


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    run = make_run(make_store(root / "toy"))
    # Greedy sampling: a frame is a function of the state and the action alone.
    env = WorldModelEnv(run, EMBODIMENT, sampling=MaskGITSampling(temperature=0.0))
    srv = make_play_server(run, EMBODIMENT, port=0, env=env, record_dir=root, seed=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path: str) -> bytes:
    with urllib.request.urlopen(srv.url.rstrip("/") + path, timeout=30) as r:
        return r.read()


def _post(srv, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=json.dumps(body or {}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


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
