"""pytest plugin: under CI (``CI=true``) a test skipped for a missing package fails the run."""

from __future__ import annotations

import os

import pytest


_MISSING_PACKAGE_SKIP = ("could not import", "not installed", "no module named")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ARG001 - pytest's hook signature
    """Under CI (``CI=true``) a test skipped for a missing package fails the run instead.

    A skip for a missing optional package hides a missing install step: the suite would pass on a
    machine that never ran those tests. Outside CI a developer may still skip them.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(marker in reason.lower() for marker in _MISSING_PACKAGE_SKIP):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing package under CI (run scripts/setup.sh --test): {reason}"
