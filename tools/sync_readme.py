"""Copy the result tables that `hma experiment` wrote into docs/results.md into the README.

The README shows each experiment's heading, table and findings between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->``; tests/test_readme.py checks that
the README matches docs/results.md, so no figure in the README is typed by hand.

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


def summary(results_md: str) -> str:
    """Heading, table and findings of every experiment section, in file order."""
    parts = []
    for _, body in SECTION.findall(results_md):
        lines = body.strip().splitlines()
        heading = next((l for l in lines if l.startswith("## ")), None)
        if heading is None:
            continue
        keep = ["#" + heading]  # one level down inside the README's Results section
        keep += [""] + [l for l in lines if l.startswith("|")]
        # Links relative to docs/results.md (its plots and GIFs in docs/assets/) as the README sees them.
        findings = [l.replace("](assets/", "](docs/assets/") for l in lines if l.startswith("- ")]
        if findings:
            keep += [""] + findings
        parts.append("\n".join(keep))
    return "\n\n".join(parts)


def synced(readme: str, results_md: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{summary(results_md)}\n{END}{tail}"


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
