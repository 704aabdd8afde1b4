"""A leaderboard from a store (or an export): plan the suite's cells as ``bench report`` does, read their
scores, build, and write the files of ``bench leaderboard --out``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bench.config.registry import Registry
from bench.errors import BenchError
from bench.leaderboard.build import Leaderboard, build
from bench.leaderboard.scores import trial_scores
from bench.metrics.table import Metric
from bench.metrics.table import metric as find_metric
from bench.report.selection import PICK_COLUMNS
from bench.store.overview import PROVENANCE_COLUMNS, provenance


class NothingFinished(BenchError):
    """The store holds no finished cell of the suite: one error line for a command, a suite without a page for
    ``bench site``."""


@dataclass
class Made:
    """A leaderboard and the notes a command prints beside it."""

    board: Leaderboard
    notes: list[str] = field(default_factory=list)


def make_leaderboard(reg: Registry, name: str, store: Any, overrides: Mapping[str, Any], metric: Metric,
                     baseline: str | None, rope: float | None, reps: int, data_root: Path | None,
                     seed: int = 0, trials: int | None = None) -> Made:
    """The leaderboard of suite (or search grid) ``name`` under the last run's settings (or ``overrides``);
    ``trials``: compare on the first ``trials`` trials of every loss only (an equal budget below the search's)."""
    from bench.plan.planner import plan_read

    read = plan_read(reg, name, store.runs(name), dict(overrides), {}, data_root)
    cells = read.plan.cells
    searched = reg.grids[name].search
    if trials is not None:
        if searched is None or not 1 <= trials <= searched.trials:
            top = searched.trials if searched is not None else 0
            raise BenchError(f"--trials {trials}: {name!r} searches {top} trials per loss; give 1 to {top}")
        cells = [c for c in cells if (c.trial or 0) < trials]
    reference = baseline or reg.grids[name].baseline_loss(reg.loss_names())
    if reference is None:
        raise BenchError(f"{name!r} names no baseline: and has no celLoss; pass --baseline LOSS")
    find_metric(metric.key, name, cells)  # a metric the cells cannot have (temperature scaling without a split)
    stored = store.cells(["attempt_id", *PROVENANCE_COLUMNS, *PICK_COLUMNS])  # what it reads, not every setting
    scores = trial_scores(reg, name, cells, stored, store, metric)
    if not scores.frame["status"].eq("done").any():
        raise NothingFinished(f"no finished cell of {name!r} in the store yet: train it first "
                         f"(bench run --{'suite' if name in reg.suites else 'grid'} {name})")
    board = build(scores, name, name in reg.suites, reference, rope, reps, seed)
    if trials is not None and searched is not None and trials < searched.trials:
        board.notes.insert(0, f"an equal budget of the first {trials} of the search's {searched.trials} trials "
                              f"per loss (--trials {trials}): trial 0, the protocol, and {trials - 1} random ones")
    board.provenance = provenance(read, stored, store, flag="--suite" if name in reg.suites else "--grid")
    notes = list(read.notes)
    done = int(scores.frame["status"].eq("done").sum())
    if done < len(scores.frame):
        notes.append(f"{done} of {len(scores.frame)} cells of {name!r} are finished; the tables say what each "
                     f"loss lacks")
    return Made(board, notes)


def draw(board: Leaderboard, target: Path, formats: tuple[str, ...] | None = None) -> list[str]:
    """The leaderboard's figures under ``target``: performance profiles, the critical-difference diagram and
    one tuning-budget figure per task, as ``formats`` (default: PNG and PDF); returns the PNG file names."""
    from bench.leaderboard.aggregate_figures import draw_cd_diagram, draw_performance_profiles
    from bench.leaderboard.budget_figures import draw_budget_curves
    from bench.leaderboard.build import units
    from bench.leaderboard.render import figure_slug
    from bench.report.figures.files import FORMATS

    formats = FORMATS if formats is None else formats
    label = f"{board.metric.name} ({units(board.metric)})"
    written: list[Path] = []
    if board.profiles is not None:
        written += draw_performance_profiles(board.profiles, board.taus, target / "profiles", metric=label,
                                             baseline=board.baseline, formats=formats)
    if board.cd is not None:
        written += draw_cd_diagram(board.cd, target / "critical-difference", metric=label, formats=formats)
    if board.curves is not None:
        for task in board.tasks:
            written += draw_budget_curves(board.curves, board.summary, task, label, target / figure_slug(task),
                                          board.baseline, selection="mean", formats=formats)
    names = [p.name for p in written if p.suffix == ".png"]
    return names


def write_leaderboard(made: Made, fmt: str, out: Path | None, source: str) -> str:
    """The leaderboard in ``fmt``; with ``out``, also written under ``OUT/<name>/`` with its figures and CSV."""
    from bench.leaderboard.render import render
    from bench.plan.code_fingerprint import code_version
    from bench.report.destination import record_source, report_dir

    board = made.board
    target = report_dir(out, board.name, source) if out is not None else None
    if fmt == "html":
        from bench.site.leaderboard import standalone_html

        text = standalone_html(board, target)  # draws its figures into the folder it is written to
    else:
        text = render(board, fmt, draw(board, target) if target is not None else [])
    if target is not None:
        from bench.fileio import StoreWriteError, atomic_write

        files = {"markdown": "leaderboard.md", "latex": "leaderboard.tex", "csv": "leaderboard.csv",
                 "html": "leaderboard.html"}
        try:
            atomic_write(target / files[fmt], text.encode(), "report")
            if fmt != "csv":
                atomic_write(target / "leaderboard.csv", render(board, "csv").encode(), "report")
        except StoreWriteError as exc:
            raise BenchError(f"cannot write into {target} ({exc.reason}); choose a writable --out folder") from None
        record_source(target, source, board.name, code_version())
    return text
