"""hma's default recipe: `hma train`, `hma tokenizer train`, TrainConfig and the demo train with one definition of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _helpers_train import make_dataset, make_tokenized
from hma.cli import build_parser, main
from hma.config import PRESETS, RECIPE

pytestmark = pytest.mark.usefixtures("single_thread")

TRAIN_RECIPE_FLAGS = ("--preset", "--config", "--setting", "--lr", "--changed-token-weight", "--num-blocks",
                      "--num-frames", "--frame-hz")
TOKENIZER_RECIPE_FLAGS = ("--encoder", "--foreground-weight", "--fsq-levels", "--vocab-size")


def test_hma_train_without_recipe_flags_writes_the_demos_recipe(tmp_path: Path) -> None:
    data, tok = make_tokenized(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data[0]), "--tokenizer", str(tok), "--out", str(run), "--steps", "2",
                 "--batch-size", "2", "--eval-windows", "2", "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    train, model = config["train"], config["model"]
    # The demo's recipe: forward dynamics, changed tokens x10, 10 Hz, 4-frame windows, lr 1e-3, 2 blocks.
    assert train["setting"] == "forward" and train["lr"] == 1e-3 and train["preset"] == "demo"
    assert model["changed_token_weight"] == 10.0 and model["frame_hz"] == 10.0
    assert model["num_frames"] == 4 and model["num_blocks"] == 2 and model["width"] == PRESETS["tiny"].width


def test_train_config_defaults_are_the_recipe() -> None:
    from hma.train import TrainConfig

    cfg = TrainConfig(data=["d"], out="o")
    assert (cfg.preset, cfg.lr, cfg.setting, cfg.changed_token_weight) == (
        RECIPE.preset, RECIPE.lr, RECIPE.setting, RECIPE.changed_token_weight)


def test_a_config_file_keeps_its_own_model_but_takes_the_recipes_objective(tmp_path: Path) -> None:
    data, tok = make_tokenized(tmp_path)
    config = tmp_path / "model.json"
    config.write_text(json.dumps(PRESETS["micro"].to_json()))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data[0]), "--tokenizer", str(tok), "--out", str(run), "--config", str(config),
                 "--steps", "1", "--batch-size", "2", "--eval-windows", "2", "--changed-token-weight", "3",
                 "--no-progress"]) == 0
    written = json.loads((run / "config.json").read_text())
    assert written["train"]["preset"] is None and written["model"]["width"] == PRESETS["micro"].width
    assert written["model"]["changed_token_weight"] == 3.0  # an explicit flag wins over the recipe


def test_hma_tokenizer_train_without_recipe_flags_trains_the_recipes_tokenizer(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data" / "arm", embodiment="arm", action_dim=2, episodes=2, length=8)
    common = ["tokenizer", "train", "--data", str(tmp_path / "data"), "--kind", "discrete", "--steps", "1",
              "--batch-size", "4", "--sample-every", "1000", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "tok")]) == 0
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["encoder"] == "patch" and config["foreground_weight"] == 5.0
    assert config["fsq_levels"] == [5, 5, 5, 5] and config["vocab_size"] == 625
    # Asking for a vocabulary size replaces the recipe's levels with the FSQ paper's for that size.
    assert main([*common, "--out", str(tmp_path / "tok1k"), "--vocab-size", "1024"]) == 0
    config = json.loads((tmp_path / "tok1k" / "config.json").read_text())
    assert config["fsq_levels"] != [5, 5, 5, 5] and 512 <= config["vocab_size"] <= 2048


def test_the_demo_trains_with_the_cli_defaults(tmp_path: Path, monkeypatch) -> None:
    import hma.demo as demo

    stages: dict[str, list[str]] = {}
    monkeypatch.setattr(demo, "_stage", lambda out, name, argv, run: stages.__setitem__(name, argv))
    monkeypatch.setattr(demo, "_montage", lambda gifs, out: out)
    demo.run_demo(tmp_path / "demo", progress=False)
    parser = build_parser()
    train, tokenizer = stages["train"], stages["tokenizer"]
    assert not [a for a in train if a in TRAIN_RECIPE_FLAGS], train
    assert not [a for a in tokenizer if a in TOKENIZER_RECIPE_FLAGS], tokenizer
    args = parser.parse_args(train)
    # No --changed-token-weight: the run takes TrainConfig's, the recipe's (see the test above).
    assert (args.preset, args.setting, args.lr, args.changed_weight) == (RECIPE.preset, RECIPE.setting, RECIPE.lr, None)
    args = parser.parse_args(tokenizer)
    assert (args.encoder, args.foreground_weight) == (RECIPE.encoder, RECIPE.foreground_weight)
