"""Data flows one way: features → models → training; serving never imports training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serving")
# What each package may import from the others.
ALLOWED = {
    "features": set(),
    "models": {"features"},
    "training": {"features", "models"},
    "serving": {"features", "models"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_goes_the_wrong_way(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path) & set(PACKAGES):
            if name != package and name not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "wrong-way imports:\n" + "\n".join(wrong)


def test_the_walker_sees_a_wrong_way_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from training.cli import main\nimport serving.service\n")
    assert _imports(bad) == {"training", "serving"}
