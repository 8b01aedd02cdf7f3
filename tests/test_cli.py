"""The command line as argparse users expect it: help on every option, defaults shown, choices where the set is known."""

from __future__ import annotations

import argparse

import pytest

from hma.cli import build_parser, main
from hma.experiments.results import EXPERIMENTS


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("hma",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_option_and_positional_has_help():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help: " + ", ".join(missing)


def test_help_shows_defaults_but_not_empty_ones(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "AdamW weight decay (default: 0.05)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_spelled_out_choices_match_the_library():
    from hma.commands.data import SUITE_NAMES
    from hma.data.sim.suite import SUITES
    from hma.tokenizer.config import ENCODERS
    from hma.run.kinds import MODEL_KINDS

    choices = {}
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.choices is not None and action.option_strings:
                choices[(" ".join(path), action.option_strings[0])] = tuple(action.choices)
    assert choices[("hma tokenizer train", "--encoder")] == tuple(ENCODERS)
    assert choices[("hma train", "--model")] == tuple(MODEL_KINDS)
    assert choices[("hma data generate", "--suite")] == SUITE_NAMES == tuple(SUITES)
    assert choices[("hma train", "--setting")] == ("video", "forward", "full", "policy", "mixed")
    from hma.commands.apps import SHIPPED_RUN
    from hma.run.pretrained import DEFAULT_RUN

    assert SHIPPED_RUN == DEFAULT_RUN


def test_unknown_choice_is_one_line_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as err:
        main(["data", "generate", "--suite", "huge", "--out", "x"])
    assert err.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_play_warns_when_it_listens_beyond_loopback(monkeypatch, capsys):
    import hma.envs.play as play

    seen = {}

    class Server:
        url = "http://0.0.0.0:1/"

        def serve_forever(self):
            pass

        def server_close(self):
            pass

    def fake(run, embodiment, **kwargs):
        seen.update(kwargs)
        return Server()

    monkeypatch.setattr(play, "make_play_server", fake)
    assert main(["play", "--run", "r", "--embodiment", "e"]) == 0
    assert seen["host"] == "127.0.0.1" and "warning" not in capsys.readouterr().err
    assert main(["play", "--run", "r", "--embodiment", "e", "--host", "0.0.0.0"]) == 0
    assert seen["host"] == "0.0.0.0" and "warning: listening on 0.0.0.0" in capsys.readouterr().err


LONG_COMMANDS = [("data", "generate"), ("data", "import-lerobot"), ("data", "export-lerobot"), ("tokenizer", "train"),
                 ("tokenizer", "eval"), ("tokenize",), ("train",), ("finetune",), ("eval",),
                 *[("experiment", name) for name in (*EXPERIMENTS, "synth-bc", "policy-ranking")], ("policy-eval",), ("synth",), ("demo",), ("bench",)]


def test_every_long_command_takes_no_progress():
    parsers = {path[1:]: parser for path, parser in _parsers(build_parser())}
    lacking = [" ".join(c) for c in LONG_COMMANDS
               if not any("--no-progress" in a.option_strings for a in parsers[c]._actions)]
    assert not lacking, "long commands without --no-progress: " + ", ".join(lacking)


def test_no_progress_turns_off_the_bars_and_only_for_that_call(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    argv = ["data", "generate", "--suite", "tiny", "--embodiments", "gym_reacher", "--episodes", "2",
            "--image-size", "16", "--no-counterfactual"]
    assert main([*argv, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "ep/s" not in capsys.readouterr().err and "TQDM_DISABLE" not in os.environ
    assert main([*argv, "--out", str(tmp_path / "loud")]) == 0
    assert "gym_reacher: 100%" in capsys.readouterr().err


def test_explicit_command_spells_out_every_option_and_parses_back_to_the_same_options():
    import shlex

    from hma.commands import explicit_command

    parser = build_parser()
    typed = ["experiment", "levers", "--data", "d1", "d2", "--tokenizer", "tok", "--out", "o", "--steps", "20",
             "--lr", "0.0005", "--no-progress"]
    args = parser.parse_args(typed)
    line = explicit_command(args, args.parser)
    assert line.startswith("hma experiment levers --out o --seed 0 --results-md docs/results.md ")
    assert "--data d1 d2" in line and "--lr 0.0005" in line and "--eval-episodes 4" in line
    assert "--no-progress" not in line and "--minutes" not in line and "--horizon" not in line
    again = parser.parse_args(shlex.split(line)[1:])
    skip = {"func", "parser", "no_progress"}
    assert {k: v for k, v in vars(again).items() if k not in skip} == {k: v for k, v in vars(args).items() if k not in skip}
