"""Generation at fp32, bf16 and int8: each deterministic, int8 close to fp32 on a trained model, bad values refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hma
from _helpers_sampling import context_and_actions, tiny_model
from _helpers_train import TINY, make_tokenized
from hma.errors import ConfigError
from hma.sampling.engine import Engine, rollout
from hma.sampling.maskgit import MaskGITSampling
import hma.sampling.precision as precision_module
from hma.sampling.precision import PRECISIONS, resolve
from hma.train import TrainConfig, train
from hma.train.data import load_training_data, to_tensors



pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_generates_deterministically(precision: str) -> None:
    model = tiny_model()
    context, actions = context_and_actions(model, batch=2, context=2, new=3)
    videos = []
    for seed in (0, 0, 1):
        engine = Engine(model, embodiment="arm", precision=precision, sampling=MaskGITSampling(temperature=1.0))
        videos.append(rollout(engine, context, actions, generator=torch.Generator().manual_seed(seed)))
    assert videos[0].shape == (2, 3, *model.config.grid)
    assert torch.equal(videos[0], videos[1]) and not torch.equal(videos[0], videos[2])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is left as it was


def test_int8_agrees_with_fp32_on_a_trained_model(tmp_path) -> None:
    # An unweighted loss: the recipe's changed-token weight (x10) leaves more greedy near-ties between
    # a token staying and changing, and int8 flips more of them (97% agreement on this model, not 99%);
    # on the demo's data int8 scores the same as fp32 (docs/results.md, levers: "int8 generation").
    data, tok = make_tokenized(tmp_path, embodiments={"arm": 2})
    train(TrainConfig(data=[str(d) for d in data], out=str(tmp_path / "run"), tokenizer=str(tok), steps=300,
                      batch_size=8, warmup=20, lr=3e-3, model_overrides=dict(TINY), setting="forward", changed_token_weight=1.0,
                      progress=False, eval_windows=8, eval_every=0))
    run = hma.load(tmp_path / "run")
    c = run.model.config
    windows = load_training_data([str(d) for d in data], run.tokenizer, num_frames=c.num_frames, frame_hz=c.frame_hz).train[0]
    batch = to_tensors(windows.get_batch(np.linspace(0, len(windows) - 1, 32).astype(np.int64)), torch.device("cpu"))
    tokens, actions = batch["frames"], batch["actions"]  # (B, T, h, w), (B, T, k*A)
    frames = {}
    for precision in ("fp32", "int8"):
        engine = Engine(run.model, embodiment="arm", precision=precision, sampling=MaskGITSampling(temperature=0.0))
        frames[precision] = rollout(engine, tokens[:, :2], actions[:, : c.num_frames - 1])  # (B, T - 2, h, w)
    agreement = (frames["fp32"] == frames["int8"]).float().mean().item()
    assert agreement >= 0.99, agreement


def test_unknown_precision_and_int8_off_the_cpu_are_refused() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="precision 'fp16' is unknown, expected one of fp32, bf16, int8"):
        Engine(model, embodiment="arm", precision="fp16")
    with pytest.raises(ConfigError, match="int8' runs on the CPU only"):
        Engine(model.to("meta"), embodiment="arm", precision="int8")


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx512_vnni"}, ("int8", "avx512_vnni")),
    ({"fpu", "avx512_vnni", "amx_int8"}, ("int8", "amx_int8")),
    ({"fpu", "avx_vnni"}, ("int8", "avx_vnni")),
    ({"fpu", "avx2"}, ("fp32", "CPU without amx_int8, avx512_vnni, avx_vnni")),
    (set(), ("fp32", "CPU without amx_int8, avx512_vnni, avx_vnni")),
])
def test_auto_precision_picks_int8_by_the_cpus_flags(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    choice = resolve("auto", "cpu")
    assert (choice.precision.value, choice.reason) == expected
    assert str(choice) == f"precision auto -> {expected[0]} ({expected[1]})"
    # An engine asked for auto generates at what it resolved to; the caller's model is unchanged.
    model = tiny_model()
    engine = Engine(model, embodiment="arm", precision="auto")
    assert engine.precision.value == expected[0] and str(engine.choice) == str(choice)
    quantized = any(type(m).__module__.startswith("torch.ao.") for m in engine.model.modules())
    assert quantized == (expected[0] == "int8")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_auto_precision_is_bf16_on_cuda_and_asked_precisions_stay(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert str(resolve("auto", "cuda")) == "precision auto -> bf16 (CUDA)"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve("auto", "cuda").precision.value == "fp32"
    assert resolve("auto", "cpu", compile=True).precision.value == "fp32"  # compiled trunks are not int8
    for asked in PRECISIONS:
        choice = resolve(asked, "cpu")
        assert choice.precision.value == asked and str(choice) == f"precision {asked}"


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    from pathlib import Path

    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = precision_module.cpu_flags()
    assert "fpu" in flags or not any(line.startswith("flags") for line in Path("/proc/cpuinfo").read_text().splitlines())


def test_bench_names_what_auto_resolved_to(monkeypatch, tmp_path, capsys) -> None:
    import json

    from hma.cli import main

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    out = tmp_path / "bench.json"
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--json", str(out), "--no-progress"]) == 0
    assert "precision auto -> int8 (avx512_vnni)" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert [r["precision"] for r in written["results"]] == ["fp32", "int8", "fp32"]  # cached x2, uncached
    assert written["machine"]["precisions"] == ["precision auto -> int8 (avx512_vnni)"]


@pytest.mark.slow
def test_a_compiled_trunk_generates_what_the_eager_one_does(tmp_path, monkeypatch) -> None:
    """torch.compile (opt-in) changes the speed, not the frames: greedy MaskGIT agrees with the
    eager model on almost every token, weights and state-dict keys stay as they were, and the
    compiled graphs land in the on-disk cache."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = tiny_model()
    context, actions = context_and_actions(model, batch=2, context=2, new=4)
    greedy = MaskGITSampling(temperature=0.0)
    eager = rollout(Engine(model, embodiment="arm", sampling=greedy), context, actions)
    keys = sorted(model.state_dict())
    compiled = rollout(Engine(model, embodiment="arm", sampling=greedy, compile=True), context, actions)
    assert (compiled == eager).float().mean() >= 0.99
    assert sorted(model.state_dict()) == keys
    assert any((tmp_path / "inductor").rglob("*.py"))
    with pytest.raises(ConfigError, match="does not apply to an int8"):
        Engine(tiny_model(), embodiment="arm", precision="int8", compile=True)
