"""Numbers out of their domain and devices this machine lacks stop at parsing with one line naming the
option, the value and what was expected; ``hma`` alone lists its commands."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from hma.cli import build_parser, main
from hma.commands.argtypes import Number, positive_int
from hma.device import resolve_device
from hma.errors import ConfigError

PARSER = build_parser()


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def _options(select) -> list[tuple[tuple[str, ...], argparse.Action]]:
    """(command path, action) of every option of every command for which ``select(action)`` holds."""
    return [(path, a) for path, parser in _parsers(PARSER) for a in parser._actions
            if a.option_strings and select(a)]


def _id(item) -> str:
    path, action = item
    return " ".join(("hma", *path, action.option_strings[-1]))


NUMBERS = _options(lambda a: isinstance(a.type, Number))
FLOATS = [item for item in NUMBERS if item[1].type.kind is float]
DEVICES = _options(lambda a: "--device" in a.option_strings)


def _refused(path: tuple[str, ...], flag: str, value: str, capsys) -> str:
    """Parse ``hma PATH FLAG=VALUE`` and return its error line; the option's type runs before
    argparse checks for missing required options, so nothing else is needed (``=``: argparse
    would take ``-inf`` for an option)."""
    with pytest.raises(SystemExit) as err:
        PARSER.parse_args([*path, f"{flag}={value}"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"{' '.join(('hma', *path))}: error: argument {flag}: "), lines[-1]
    return lines[-1]


def test_every_numeric_option_takes_a_validating_type():
    """A raw type=int/float (or a numeric default read as a string) lets 0, -1 or nan through."""
    raw = [_id(item) for item in _options(lambda a: a.type in (int, float) or (
        a.type is None and isinstance(a.default, (int, float)) and not isinstance(a.default, bool)))]
    assert not raw, "numeric options without a validating type (hma.commands.argtypes): " + ", ".join(raw)
    assert len(NUMBERS) > 100 and len(FLOATS) > 30  # the walk sees every command


@pytest.mark.parametrize("item", NUMBERS, ids=_id)
def test_defaults_lie_in_their_options_domain(item):
    _, action = item
    defaults = action.default if isinstance(action.default, (list, tuple)) else [action.default]
    assert all(d is None or action.type.contains(d) for d in defaults), (action.default, action.type.expected)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("item", FLOATS, ids=_id)
def test_non_finite_numbers_are_refused(item, bad, capsys):
    path, action = item
    line = _refused(path, action.option_strings[-1], bad, capsys)
    assert line.endswith(f"expected {action.type.expected}, got {bad}") and "finite" in line


def _outside(number: Number) -> list[str]:
    """Values just outside ``number``'s domain, and a non-number."""
    step = 1 if number.kind is int else 0.5
    values = ["twelve"] + (["1.5"] if number.kind is int else [])
    if number.low is not None:
        values.append(f"{number.low if number.low_open else number.low - step:g}")
    if number.high is not None:
        values.append(f"{number.high if number.high_open else number.high + step:g}")
    return values


@pytest.mark.parametrize("item", NUMBERS, ids=_id)
def test_out_of_range_numbers_are_refused_and_the_ends_of_the_range_accepted(item, capsys):
    path, action = item
    number = action.type
    for bad in _outside(number):
        line = _refused(path, action.option_strings[-1], bad, capsys)
        assert f"expected {number.expected}, got " in line and bad in line
    for end, is_open in ((number.low, number.low_open), (number.high, number.high_open)):
        if end is not None and not is_open:
            assert number(f"{end:g}") == end


@pytest.mark.parametrize("argv", [
    ["train", "--batch-size", "0"], ["train", "--steps", "0"], ["finetune", "--eval-windows", "0"],
    ["tokenizer", "train", "--batch-size", "0"], ["tokenize", "--batch-size", "0"], ["eval", "--batch-size", "0"],
    ["data", "preview", "--frames", "0"], ["data", "generate", "--episodes", "0"], ["policy-eval", "--frames", "0"],
    ["synth", "--frames", "0"], ["synth", "--episodes", "0"], ["bench", "--batch", "1", "0"],
    ["experiment", "curve", "--horizon", "0"], ["tokenize", "--threads", "0"], ["eval", "--threads", "-1"],
])
def test_zero_counts_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        PARSER.parse_args(argv)
    assert f"argument {argv[-2] if argv[-2].startswith('--') else argv[-3]}: expected an integer >= 1, got {argv[-1]}" \
        in capsys.readouterr().err


def test_a_window_of_one_frame_is_refused(capsys):
    line = _refused(("train",), "--num-frames", "1", capsys)
    assert line.endswith("expected an integer >= 2, got 1")
    assert PARSER.parse_args(["train", "--data", "d", "--out", "o", "--steps", "1", "--num-frames", "2"]).num_frames == 2


@pytest.mark.parametrize("bad", ["-1", "65536", "70000", "http"])
def test_a_port_outside_0_to_65535_is_refused(bad, capsys):
    line = _refused(("play",), "--port", bad, capsys)
    assert "expected a port number in [0, 65535], got" in line and bad in line


def test_ports_0_and_65535_are_accepted():
    for port in (0, 65535):
        assert PARSER.parse_args(["play", "--embodiment", "e", "--port", str(port)]).port == port


@pytest.mark.parametrize("flag,value,expected", [
    ("--ema", "1.0", "expected a finite number in [0, 1), got 1.0"),
    ("--holdout", "1.0", "expected a finite number in [0, 1), got 1.0"),
    ("--frame-hz", "0", "expected a finite number > 0, got 0"),
    ("--lr", "nan", "expected a finite number > 0, got nan"),
    ("--train-fraction", "0", "expected a finite number in (0, 1], got 0"),
])
def test_values_once_silently_replaced_are_refused(flag, value, expected, capsys):
    assert _refused(("train",), flag, value, capsys).endswith(expected)


def test_number_types_return_numbers_of_their_kind():
    assert positive_int("7") == 7 and isinstance(positive_int("7"), int)
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer >= 1, got '7.0'"):
        positive_int("7.0")
    assert Number(float, 0, 1, high_open=True)("0.999") == 0.999
    assert not Number(float).contains(math.nan) and not Number(int, 0).contains(True)


# -- devices ----------------------------------------------------------------------


@pytest.mark.parametrize("item", DEVICES, ids=_id)
def test_every_device_option_refuses_an_unknown_or_missing_device(item, capsys):
    path, _ = item
    assert len(DEVICES) >= 8
    line = _refused(path, "--device", "gpu", capsys)
    assert line.endswith("device 'gpu' is unknown; expected " + _expected())
    line = _refused(path, "--device", "cuda:99", capsys)
    assert "device 'cuda:99': " in line and line.endswith("; expected " + _expected())
    assert PARSER.parse_args([*path, "--device", "cpu", *_required(path)]).device == "cpu"


def _expected() -> str:
    from hma.device import _expected

    return _expected()


def _required(path: tuple[str, ...]) -> list[str]:
    """Enough of each command's required options to parse."""
    return {("tokenizer", "train"): ["--data", "d", "--kind", "discrete", "--out", "o"],
            ("tokenizer", "eval"): ["--tokenizer", "t", "--data", "d"],
            ("tokenize",): ["--data", "d", "--tokenizer", "t"],
            ("play",): ["--embodiment", "e"],
            ("policy-eval",): ["--run", "r", "--embodiment", "e"],
            ("synth",): ["--run", "r", "--embodiment", "e", "--episodes", "1", "--out", "o"],
            ("eval",): ["--run", "r", "--data", "d", "--out", "o"],
            ("experiment", "policy-ranking"): ["--out", "o", "--run", "r", "--embodiments", "e"]}[path]


def test_resolve_device_defaults_to_the_gpu_when_there_is_one():
    default = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == default
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == resolve_device(" CPU ") == torch.device("cpu")


def test_resolve_device_names_what_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError) as err:
        resolve_device("cuda", what="--device")
    assert str(err.value) == "--device 'cuda': CUDA is not available in this torch build; expected cpu or auto"
    with pytest.raises(ConfigError, match=r"^device 'mps': MPS \(Apple GPU\) is not available here; expected cpu or auto$"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match=r"^device 'tpu' is unknown; expected cpu or auto$"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"^device 'cuda:2': this machine has 2 CUDA GPUs; expected cpu, cuda, "
                                          r"cuda:0, cuda:1 or auto$"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_one_device_default_for_load_the_envs_and_the_apps():
    """None everywhere, resolved by hma.device.resolve_device: the GPU when there is one."""
    import inspect

    import hma
    from hma.apps.policy_eval import evaluate_policies
    from hma.apps.synth import synthesize
    from hma.envs.env import WorldModelEnv
    from hma.envs.play import make_play_server
    from hma.envs.vector_env import WorldModelVectorEnv
    from hma.eval.runner import evaluate
    from hma.run import load, open_run
    from hma.train.tokenizer import train_tokenizer

    takers = [load, open_run, WorldModelEnv, WorldModelVectorEnv, make_play_server, evaluate_policies, synthesize,
              evaluate, train_tokenizer]
    defaults = {f.__qualname__: inspect.signature(f).parameters["device"].default for f in takers}
    assert set(defaults.values()) == {None}, defaults
    with pytest.raises(ConfigError, match="device 'cuda:99'"):
        hma.load(device="cuda:99")


def test_the_env_refuses_a_missing_device_before_loading_anything():
    import gymnasium

    import hma.envs  # noqa: F401  (registers hma/WorldModel-v0)

    with pytest.raises(ConfigError, match=r"^device 'gpu' is unknown; expected "):
        gymnasium.make("hma/WorldModel-v0", embodiment="pusht", device="gpu")


# -- command groups without their command ------------------------------------------


@pytest.mark.parametrize("argv,commands", [
    ([], ["data", "tokenizer", "tokenize", "train", "finetune", "model", "play", "policy-eval", "synth", "eval",
          "experiment", "demo", "bench"]),
    (["data"], ["generate", "info", "preview", "import-lerobot", "export-lerobot"]),
    (["experiment"], ["levers", "curve", "synth-bc", "policy-ranking"]),
])
def test_a_group_alone_lists_its_commands(argv, commands, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    text = capsys.readouterr().err
    assert err.value.code == 2 and text.startswith(f"usage: {' '.join(['hma', *argv])} ")
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.split()]
    assert set(commands) <= set(listed), listed
    assert text.strip().splitlines()[-1].startswith(f"{' '.join(['hma', *argv])}: error: ")


def test_help_shows_the_default_of_options_that_had_none(capsys):
    shown = {("train",): ["--frame-hz", "--injection", "--ema"], ("tokenizer", "train"): ["--threads", "--channels"],
             ("eval",): ["--diffusion-steps", "--threads"], ("data", "import-lerobot"): ["--image-size"],
             ("experiment", "levers"): ["--horizon"]}
    parsers = dict(_parsers(PARSER))
    for path, flags in shown.items():
        for action in parsers[path]._actions:
            if set(flags) & set(action.option_strings):
                assert "(default: " in action.help, (path, action.option_strings)
