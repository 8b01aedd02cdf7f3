import imageio.v3 as iio
import pytest

from _helpers_data_sim import SMALL_EMBODIMENTS, SMALL_EPISODES, SMALL_STEPS, small_suite
from hma.cli import main
from hma.data.inspect import info_table, preview
from hma.data.sim.registry import get_embodiment
from hma.errors import ConfigError, DataError


def test_info_table_has_one_row_per_dataset_with_its_numbers():
    table = info_table([small_suite()])
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["embodiment", "simulator", "action_dim", "Hz", "episodes", "frames"]
    for name in SMALL_EMBODIMENTS:
        spec = get_embodiment(name)
        row = next(line.split() for line in lines if line.startswith(name))
        assert row[1:6] == [spec.simulator, str(spec.action_dim), str(spec.control_hz), str(SMALL_EPISODES), str(SMALL_EPISODES * SMALL_STEPS)]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[1:3] == [str(len(SMALL_EMBODIMENTS) * SMALL_EPISODES), str(len(SMALL_EMBODIMENTS) * SMALL_EPISODES * SMALL_STEPS)]


def test_info_table_verify_and_bad_path(tmp_path):
    assert "pusht" in info_table([small_suite() / "pusht"], verify=True)
    with pytest.raises(DataError):
        info_table([tmp_path / "missing"])


def test_preview_writes_one_row_per_embodiment(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "preview", str(small_suite()), "--out", str(out), "--frames", "4"]) == 0
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[0] > 60 * len(SMALL_EMBODIMENTS)
    assert image.std() > 5
    wide = tmp_path / "wide.png"
    preview([small_suite()], wide, frames_per_embodiment=8)
    assert iio.imread(wide).shape[1] > image.shape[1]
    with pytest.raises(ConfigError):
        preview([small_suite()], tmp_path / "none.png", frames_per_embodiment=0)
