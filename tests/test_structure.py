"""The package's dependencies point one way, down the data flow.

data -> features -> model -> train -> evaluate -> export -> serve; feedback builds on
mmrec, never the reverse. These checks read the imports of every module (the
code's own text, parsed) and, where it matters at run time, which modules an
import really loads in a fresh process.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmrec"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules() -> dict[str, set[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = imports_of(path)
    return found


def importers_of(target: str) -> set[str]:
    return {name for name, imported in modules().items()
            if any(i == target or i.startswith(target + ".") for i in imported)}


def test_serving_loads_neither_training_nor_benchmarks_in_a_fresh_process():
    code = ("import sys, json, mmrec.serve\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mmrec'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "mmrec.serve.recommender" in loaded
    forbidden = [m for m in loaded if m.startswith(("mmrec.train", "mmrec.bench", "mmrec.cli",
                                                    "mmrec.export.exporter"))]
    assert forbidden == []


@pytest.mark.parametrize("target, allowed", [
    # the simulated shop is one data set: only it, its scorers and the registry name it
    ("mmrec.data.shop", {"mmrec.data.shop_scorers", "mmrec.data.registry"}),
    ("mmrec.data.shop_scorers", {"mmrec.data.shop"}),
    ("mmrec.data.fashion_mnist", {"mmrec.data.shop"}),
    ("mmrec.data.movielens", {"mmrec.data.registry"}),
])
def test_no_generic_module_imports_a_particular_data_set(target, allowed):
    assert importers_of(target) - allowed == set()


@pytest.mark.parametrize("lower, higher", [
    ("mmrec.data", ("mmrec.features", "mmrec.model", "mmrec.train", "mmrec.evaluate",
                    "mmrec.export", "mmrec.serve", "mmrec.bench", "mmrec.cli", "mmrec.config")),
    ("mmrec.model", ("mmrec.train", "mmrec.evaluate", "mmrec.export", "mmrec.serve",
                     "mmrec.bench", "mmrec.cli")),
    ("mmrec.evaluate", ("mmrec.train", "mmrec.export", "mmrec.serve", "mmrec.bench",
                        "mmrec.cli")),
    ("mmrec.train", ("mmrec.export", "mmrec.serve", "mmrec.bench", "mmrec.cli")),
    ("mmrec.serve", ("mmrec.train", "mmrec.bench", "mmrec.cli", "mmrec.export.exporter",
                     "mmrec.export.publish")),
    ("mmrec", ("feedback",)),
])
def test_dependencies_point_down_the_data_flow(lower, higher):
    wrong = {(name, i) for name, imported in modules().items()
             if name == lower or name.startswith(lower + ".")
             for i in imported if i.startswith(higher)}
    assert wrong == set()
