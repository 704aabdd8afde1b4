"""The house keeps its shape: one package per stage, each saying its job, the configuration torch-free,
and nothing below the CLI importing it."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

BENCH = REPO / "bench"
STAGES = ("config", "plan", "run", "train", "data", "models", "metrics", "store", "report", "leaderboard", "site",
          "paper", "cli")
TOP_LEVEL = {"__init__.py", "errors.py", "fileio.py", "seams.py"}


def test_bench_is_one_package_per_stage():
    assert {p.name for p in BENCH.glob("*.py")} == TOP_LEVEL
    assert {p.name for p in BENCH.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(STAGES)


def test_each_package_says_its_one_job():
    for init in BENCH.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 6, f"{init.relative_to(REPO)} has no docstring saying its job"


def test_the_configuration_imports_no_torch():
    modules = sorted(f"bench.config.{p.stem}" for p in (BENCH / "config").glob("*.py") if p.stem != "__init__")
    code = f"import sys; import {', '.join(modules)}; assert 'torch' not in sys.modules, 'torch'"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_nothing_below_the_cli_imports_it():
    for path in BENCH.rglob("*.py"):
        if path.is_relative_to(BENCH / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n == "bench.cli" or n.startswith("bench.cli.") for n in names), path
