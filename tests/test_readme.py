"""Every command in the README runs as written (with tiny sizes where the README's take long).

The commands are read from the README's bash blocks, so editing the README changes what
this test runs. Size flags are shrunk by the substitutions below and nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HMA = [sys.executable, "-m", "hma.cli"]

# Only sizes change: durations become a few steps, the big preset the tiny one.
SHRINK = [
    (r"--minutes \S+", "--steps 3"),
    (r"--steps 100000", "--steps 2"),
    (r"--nproc_per_node=\d+", "--nproc_per_node=2"),
    (r"--preset base", "--preset tiny"),
    (r"data/default", "data/tiny"),
    (r"--suite tiny", "--suite tiny --episodes 3 --embodiments pusht gym_reacher"),
    (r"--suite pretrain", "--suite pretrain --episodes 3 --embodiments pusht gym_reacher"),
    (r"hma bench --json bench.json", "hma bench --json bench.json --presets tiny --repeats 1"),
]


def readme_blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    cmds = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("hma ", "torchrun ")):
                cmds.append(line)
    return cmds


def shrink(cmd: str) -> str:
    for pattern, repl in SHRINK:
        cmd = re.sub(pattern, repl, cmd)
    return cmd


def to_argv(cmd: str) -> list[str]:
    argv = shlex.split(cmd)
    if argv[0] == "hma":
        return HMA + argv[1:]
    return [sys.executable, "-m", "torch.distributed.run"] + argv[1:]


def run(cmd: str, cwd: Path, env: dict) -> None:
    proc = subprocess.run(to_argv(shrink(cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"`{cmd}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def check_play(cmd: str, cwd: Path, env: dict) -> None:
    argv = to_argv(shrink(cmd)) + ["--port", "0"]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        url = None
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"http://127\.0\.0\.1:\d+/?", line)
            url = m.group(0) if m else None
        assert url, f"`{cmd}` printed no URL"
        page = urllib.request.urlopen(url, timeout=30).read()
        assert b"<html" in page.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cmds = readme_commands()
    assert len(cmds) >= 15, cmds
    for cmd in cmds:
        if cmd.startswith("hma data import-lerobot"):
            # The README imports "your" LeRobot dataset: make one from the suite first.
            src = shlex.split(cmd)[3]
            run(f"hma data export-lerobot data/tiny/pusht {src}", tmp_path, env)
        if cmd.startswith("hma play"):
            check_play(cmd, tmp_path, env)
        else:
            run(cmd, tmp_path, env)
    # The Python API block, against the run the tour trained.
    (tmp_path / "demo_out").mkdir()
    (tmp_path / "demo_out" / "run").symlink_to(tmp_path / "runs" / "tiny")
    for block in readme_blocks("python"):
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "(64, 64, 3) uint8" in proc.stdout


def test_readme_names_the_two_commands_and_ci_calls_make_test():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # every README command names a real CLI command
    from hma.cli import build_parser

    parser = build_parser()
    for cmd in readme_commands():
        if cmd.startswith("hma "):
            argv = shlex.split(cmd)[1:]
            try:
                parser.parse_args(argv)
            except SystemExit as e:  # argparse exits on an unknown command or flag
                pytest.fail(f"README command does not parse: {cmd} ({e})")


def test_readme_results_match_docs_results():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_readme.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_python_dash_m_hma_is_the_hma_command():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hma", "data", "generate", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--no-counterfactual" in done.stdout


def test_readme_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines, expected at most 200: move details to docs/"


def _docs() -> list[Path]:
    """The documentation a reader sees: the README, docs/ and every shipped model card."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
            *sorted((ROOT / "src" / "hma" / "pretrained").glob("*/MODEL_CARD.md"))]


def test_docs_name_no_scratch_paths():
    docs = _docs()
    assert ROOT / "docs" / "results.md" in docs and any(p.name == "MODEL_CARD.md" for p in docs)
    for path in docs:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "/tmp/" not in line, f"{path.relative_to(ROOT)}:{number} names a scratch path: {line[:120]}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_docs_lead_somewhere():
    for path in _docs():
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{path.relative_to(ROOT)}: no heading #{anchor} in {file}"
