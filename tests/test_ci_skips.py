"""Under CI a skip for a missing package is a failure, so a missing install step cannot hide."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SKIPPING = """
import pytest

def test_needs_a_package():
    pytest.importorskip("lossbench_no_such_package")

@pytest.mark.skipif(True, reason="pdflatex not installed (scripts/setup.sh installs it)")
def test_needs_a_tool():
    pass

@pytest.mark.skip(reason="a deliberate skip")
def test_skipped_on_purpose():
    pass
"""


def _pytest(tmp_path, ci: str | None):
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
                           str(tmp_path / "test_skips.py")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_missing_package_skips_fail_under_ci(tmp_path):
    r = _pytest(tmp_path, "true")
    assert r.returncode == 1, r.stdout
    # a skipif mark skips in the setup phase, so that one is reported as an error
    assert "1 failed, 1 skipped, 1 error" in r.stdout
    assert "lossbench_no_such_package" in r.stdout and "pdflatex not installed" in r.stdout


def test_missing_package_skips_stay_skips_outside_ci(tmp_path):
    r = _pytest(tmp_path, None)
    assert r.returncode == 0, r.stdout
    assert "3 skipped" in r.stdout
