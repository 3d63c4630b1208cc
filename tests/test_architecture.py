"""Data flows one way: features → models → training; serving never imports training.

The command line (``cli``) is the top floor: it composes every package, and no package
imports it. The store simulator (``simulation``) produces data in the contracts'
formats: it builds on ``features`` alone, and of the packages only the command line
(``tailor simulate``, ``tailor demo``) runs it; tests and benchmarks may import it too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "simulation", "models", "training", "serving", "cli")
# What each package may import from the others (none may import the top floor, cli).
ALLOWED = {
    "features": set(),
    "simulation": {"features"},
    "models": {"features"},
    "training": {"features", "models"},
    "serving": {"features", "models"},
    "cli": {"features", "simulation", "models", "training", "serving"},
}
# The packages that may import the simulator: the command line only.
SIMULATION_USERS = {"cli"}


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


def test_only_the_command_line_runs_the_simulator():
    users = {
        path.relative_to(ROOT)
        for package in PACKAGES
        if package != "simulation"
        for path in (ROOT / package).rglob("*.py")
        if "simulation" in _imports(path)
    }
    extra = sorted(str(path) for path in users if path.parts[0] not in SIMULATION_USERS)
    assert not extra, "imports simulation:\n" + "\n".join(extra)


def test_the_walker_sees_a_wrong_way_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from training.promotion import promote\nimport serving.service\n")
    assert _imports(bad) == {"training", "serving"}
