"""Data flows one way: features → models → training → measurement; serving never imports
training, and measurement reads what serving logged without importing it.

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
PACKAGES = ("features", "simulation", "models", "training", "serving", "measurement", "cli")
# What each package may import from the others (none may import the top floor, cli).
ALLOWED = {
    "features": set(),
    "simulation": {"features"},
    "models": {"features"},
    "training": {"features", "models"},
    "serving": {"features", "models"},
    "measurement": {"features", "models", "training"},
    "cli": {"features", "simulation", "models", "training", "serving", "measurement"},
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


# Inside features: personal data's keyed hashes and masks (pii) at the bottom; the data
# layer reads and stores rows; the feature jobs build on it; privacy (erasure,
# retention, the ledger) reaches every store, so it sits on top.
# Each room may import the shared modules (errors, progress, settings) and the rooms
# listed; the data layer none of the feature jobs.
SHARED = {"errors", "progress", "settings"}
FEATURE_ROOMS = {
    "pii": set(),
    "data": {"pii"},
    "identity": {"data", "pii"},
    "segments": {"data"},
    "snapshot": {"data", "identity", "segments", "pii"},
    "privacy": {"data", "identity", "snapshot", "pii"},
}


def _feature_rooms(path: Path) -> set[str]:
    """The ``features`` modules or subpackages ``path`` imports (``data``, ``identity`` …)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rooms: set[str] = set()
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "features" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


@pytest.mark.parametrize("room", sorted(FEATURE_ROOMS))
def test_the_data_layer_sits_below_the_feature_jobs(room):
    base = ROOT / "features" / room
    paths = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    wrong = [
        f"{path.relative_to(ROOT)} imports features.{other}"
        for path in paths
        for other in _feature_rooms(path) - SHARED - FEATURE_ROOMS[room] - {room}
    ]
    assert not wrong, "wrong-way imports inside features:\n" + "\n".join(wrong)


def test_every_features_module_belongs_to_a_room():
    names = {p.stem for p in (ROOT / "features").glob("*.py")} | {
        p.name for p in (ROOT / "features").iterdir() if (p / "__init__.py").exists()
    }
    assert names - {"__init__"} <= set(FEATURE_ROOMS) | SHARED
