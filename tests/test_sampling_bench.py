"""`hma bench` plumbing: one fast measurement, the table's ratios and the JSON layout."""

import json

import pytest

from hma.cli import main
from hma.sampling.bench import (BenchResult, BenchSettings, bench_world_model, format_table, format_throughput,
                                results_json)
from hma.sampling.engine import CacheMode


pytestmark = pytest.mark.usefixtures("single_thread")


def test_one_measurement_reports_time_and_decode() -> None:
    result = bench_world_model("tiny", "maskgit", CacheMode.CACHED, BenchSettings(repeats=1))
    assert (result.preset, result.method, result.cached, result.steps) == ("tiny", "maskgit", True, 2)
    assert 0 < result.sec_per_frame < 60
    assert result.decode_sec_per_frame is not None and result.decode_sec_per_frame > 0
    assert result.flops_per_frame is not None and result.flops_per_frame > 0


def test_flop_counts_show_what_the_cache_saves() -> None:
    """A cached frame costs K single-frame passes plus one commit pass; an uncached one K
    passes over the whole window (8 frames at tiny): the FLOP ratio is 8K / (K + 1)."""
    flops = {(mode, k): bench_world_model("tiny", "maskgit", mode, BenchSettings(repeats=1, maskgit_steps=k)).flops_per_frame
             for mode in CacheMode for k in (2, 4)}
    for k in (2, 4):
        ratio = flops[(CacheMode.UNCACHED, k)] / flops[(CacheMode.CACHED, k)]
        assert 8 * k / (k + 1) * 0.9 < ratio < 8 * k / (k + 1) * 1.25, (k, ratio)
    assert flops[(CacheMode.CACHED, 4)] / flops[(CacheMode.CACHED, 2)] == pytest.approx(5 / 3, rel=0.05)


def test_table_shows_the_ratios_side_by_side() -> None:
    results = [BenchResult("base", "maskgit", True, 2, 0.5, 0.01, 0.4, 3e9), BenchResult("base", "maskgit", False, 2, 5.0, 0.01, 3.2, 24e9),
               BenchResult("base", "diffusion", True, 50, 10.0, None, 8.0, 51e9)]
    table = format_table(results)
    assert "base (wall): maskgit uncached/cached = 10.0x, diffusion/maskgit cached = 20.0x" in table
    assert "base (cpu): maskgit uncached/cached = 8.0x, diffusion/maskgit cached = 20.0x" in table
    assert "base (FLOPs): maskgit uncached/cached = 8.0x, diffusion/maskgit cached = 17.0x" in table
    data = results_json(results, {"cpu_count": 2})
    assert data["results"][0] == {"preset": "base", "method": "maskgit", "cached": True, "steps": 2,
                                  "sec_per_frame": 0.5, "decode_sec_per_frame": 0.01, "cpu_sec_per_frame": 0.4,
                                  "flops_per_frame": 3e9, "precision": "fp32", "batch": 1, "compiled": False,
                                  "warmup_sec": 0.0}
    # A compiled row: its speed beside the eager one, its compilation (first frames minus the eager's) apart.
    results[0].warmup_sec = 2.0
    compiled = BenchResult("base", "maskgit", True, 2, 0.25, 0.01, 0.2, None, compiled=True, warmup_sec=32.0)
    table = format_table([*results, compiled])
    assert "maskgit fp32+c/fp32 = 0.50x" in table and "first frames compiled minus eager): maskgit fp32 30.0 s" in table


def test_cli_rejects_an_unknown_preset(capsys) -> None:
    assert main(["bench", "--presets", "huge"]) == 2
    assert "preset 'huge'" in capsys.readouterr().err


def test_cli_writes_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--precision", "fp32", "--json", str(out)]) == 0  # fp32 only: auto's int8 depends on the CPU
    rows = json.loads(out.read_text())["results"]
    assert [(r["method"], r["cached"]) for r in rows] == [("maskgit", True), ("maskgit", False)]


def test_cli_writes_its_speed_section(tmp_path) -> None:
    md = tmp_path / "results.md"
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--results-md", str(md), "--json", str(tmp_path / "b.json")]) == 0
    text = md.read_text()
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert text.count("hma-experiment:speed:begin") == 1 and "hma bench --presets tiny" in text
    assert f"| tiny | maskgit | cached | fp32 | 2 | {rows[0]['sec_per_frame']:.4f} |" in text
    assert "- tiny (FLOPs): maskgit uncached/cached = " in text


def test_cli_reports_an_unwritable_results_file_in_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--json", str(blocker / "bench.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hma: error: ") and str(blocker) in err and "\n" not in err


def test_cli_measures_each_precision_beside_fp32(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--precision", "int8", "bf16", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["cached"], r["precision"]) for r in rows] == [(True, "fp32"), (True, "int8"), (True, "bf16"),
                                                            (False, "fp32")]
    assert rows[1]["flops_per_frame"] is None and rows[2]["flops_per_frame"] == rows[0]["flops_per_frame"]
    table = capsys.readouterr().out
    assert "maskgit int8/fp32 = " in table and "maskgit bf16/fp32 = " in table
    with pytest.raises(SystemExit) as err:
        main(["bench", "--precision", "fp8"])
    assert err.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_a_batched_step_does_batch_times_the_work_and_is_shown_against_the_peak() -> None:
    one = bench_world_model("tiny", "maskgit", CacheMode.CACHED, BenchSettings(repeats=1))
    four = bench_world_model("tiny", "maskgit", CacheMode.CACHED, BenchSettings(repeats=1), batch=4)
    assert four.batch == 4 and four.flops_per_frame == pytest.approx(4 * one.flops_per_frame, rel=0.02)
    assert four.env_frames_per_s == pytest.approx(4 / four.sec_per_frame)
    results = [BenchResult("tiny", "maskgit", True, 2, 0.5, None, 0.5, 20e9, batch=1),
               BenchResult("tiny", "maskgit", True, 2, 2.0, None, 2.0, 640e9, batch=64)]
    table = format_throughput(results, peak_gflops=400.0)
    assert "fp32 matmul peak: 400.0 GFLOP/s" in table
    assert "tiny   maskgit      64    2.0000     32.00     320.0    80.0%" in table  # 640 GFLOP in 2 s of 400 GFLOP/s
    assert "tiny   maskgit       1    0.5000      2.00      40.0    10.0%" in table


def test_cli_batches_print_the_throughput_beside_the_peak(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["bench", "--batch", "0"])
    assert err.value.code == 2 and "argument --batch: expected an integer >= 1, got 0" in capsys.readouterr().err
    md = tmp_path / "results.md"
    assert main(["bench", "--presets", "tiny", "--methods", "maskgit", "--repeats", "1", "--threads", "1",
                 "--batch", "2", "--precision", "fp32", "--results-md", str(md), "--json", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak:" in out and "of peak" in out
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["machine"]["fp32_matmul_peak_gflops"] > 0
    assert sorted(r["batch"] for r in data["results"]) == [1, 1, 2]
    assert "Batched (B rollouts per step" in md.read_text()
