"""The package stays readable in one sitting: no function over 80 lines, no module over 400."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hma"
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                found.append((name, node))
            found += _functions(node, f"{name}.")
        else:
            found += _functions(node, prefix)
    return found


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first decorator (or ``def``) to the last line of the body."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return node.end_lineno - first + 1


def test_the_package_has_modules_to_check():
    assert len(_modules()) > 10, f"no modules found under {SRC}"


def test_no_function_is_over_80_lines():
    long = []
    for path in _modules():
        for name, node in _functions(ast.parse(path.read_text(), filename=str(path))):
            if (n := _length(node)) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


def test_no_module_is_over_400_lines():
    long = [f"{path.relative_to(SRC.parent)} ({n} lines)" for path in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, f"modules over {MAX_FILE_LINES} lines: " + "; ".join(long)
