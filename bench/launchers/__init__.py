"""Launchers run claimed cells somewhere and hand each outcome back to the driver.

A launcher implements ``run(cells, opts, hooks)``: for each cell it calls ``hooks.claim(cell)``
(False means skip it: another process has it or it is already done), runs it (in process, in a
pool, on Ray, on SLURM), and calls ``hooks.finish(cell, outcome)`` in the driver process, which
alone writes the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.cells import Cell
from bench.execute import CellOutcome, ExecOptions
from bench.train import Progress


@dataclass
class Hooks:
    claim: Callable[[Cell], bool]
    start: Callable[[Cell], None]
    progress: Callable[[Cell, Progress], None]
    finish: Callable[[Cell, CellOutcome], None]
    release: Callable[[Cell], None]


class Launcher(Protocol):
    def run(self, cells: list[Cell], opts: ExecOptions, hooks: Hooks) -> None: ...
