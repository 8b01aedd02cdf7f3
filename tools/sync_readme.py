"""Copy the README's headline figures from docs/results.md, where `hma experiment` wrote them.

The README shows a few headline figures in a table between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->``; each is read out of its section of
docs/results.md by a pattern below, and tests/test_readme.py checks that the README matches,
so no figure in that table is typed by hand. A pattern that no longer matches (the section was
re-run and reads differently) stops the sync with the row's name: choose the row again.

    python tools/sync_readme.py          # rewrite README.md
    python tools/sync_readme.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SECTION = re.compile(r"<!-- hma-experiment:(\w[\w-]*):begin -->\n(.*?)<!-- hma-experiment:\1:end -->", re.S)

# (what, section of docs/results.md, pattern over its lines (re.M), how its groups read in the README)
HEADLINES = (
    ("hma-tiny, the shipped model", "shipped-model", r"^- model: (.+)$", "{0}"),
    ("its training", "shipped-model", r"^- A CPU budget: ([\d,]+ steps on \d+ cores)", "{0}"),
    ("its robots: ΔPSNR vs simulator interval above 0; following other actions", "shipped-model",
     r"^\| \*\*robots passing\*\* \| ([^|]+?) \| [^|]+? \| ([^|]+?) \|", "{0}; {1}"),
    ("ΔPSNR vs simulator as it trained, 2,000 to 32,000 steps (mean over robots)", "curve",
     r"^- from 2,000 to 32,000 steps: ΔPSNR (.+? dB)", "{0}"),
    ("success in the world model vs the real simulator, one task", "policy-eval", r"^- (Pearson .+)$", "{0}"),
    ("ranking policies in one multi-robot world model, task by task: Pearson >= 0.95 and Spearman >= 0.9 "
     "met on", "policy-eval-robots",
     r"^- target \(Pearson >= 0\.95, Spearman >= 0\.9 on tasks of 2 simulators\): met on ([^;]+)", "{0}"),
    ("frames/s on a CPU, tiny preset, cached MaskGIT, batch 1", "speed",
     r"^\| tiny \| maskgit \| cached \| fp32 \| \d+ \| [^|]+ \| ([^|]+?) \|[\s\S]*?"
     r"^- tiny \(wall\):.*diffusion/maskgit cached = ([\d.]+)x", "{0} (video diffusion {1}x slower)"),
)


def sections(results_md: str) -> dict[str, str]:
    """Each experiment section's text by its name."""
    return {name: body for name, body in SECTION.findall(results_md)}


def headline(results_md: str) -> str:
    """The README's headline table, every figure read out of docs/results.md."""
    found = sections(results_md)
    rows = ["| result | figure | section of [docs/results.md](docs/results.md) |", "|---|---|---|"]
    for what, name, pattern, form in HEADLINES:
        m = re.search(pattern, found.get(name, ""), flags=re.M)
        if m is None:
            raise SystemExit(f"docs/results.md's {name!r} section has no line matching {pattern!r} "
                             f"(the README's row {what!r}): choose that row again in tools/sync_readme.py")
        rows.append(f"| {what} | {form.format(*m.groups())} | `{name}` |")
    return "\n".join(rows)


def synced(readme: str, results_md: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{headline(results_md)}\n{END}{tail}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    new = synced(readme, (ROOT / "docs" / "results.md").read_text())
    if args.check:
        if new != readme:
            print("README.md results differ from docs/results.md: run python tools/sync_readme.py")
            return 1
        return 0
    readme_path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
