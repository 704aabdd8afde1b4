"""What a program embedding ``bench run`` plugs into it: training callbacks and the file writer.

``bench run`` takes a :class:`Seams` value as its click context object, so a script can run
the real command line with its own seams::

    from bench.cli.main import app
    from bench.seams import Seams

    app(obj=Seams(callbacks=(MyLogger(),), writer=MyWriter()))

(``CliRunner().invoke(app, args, obj=Seams(...))`` does the same in a test.) The callbacks
(:class:`bench.train.loop.TrainCallback`) are told of every epoch of every cell; the writer
(:class:`bench.fileio.Writer`) writes every results file and checkpoint. Both travel inside
:class:`bench.train.cell.ExecOptions` to wherever cells train (pool workers, Ray tasks, SLURM jobs),
pickled: so they must be picklable, and their classes importable in those processes (a module of
the project, or one on the workers' ``PYTHONPATH``). Without seams, ``bench run`` uses none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.fileio import Writer
from bench.train.loop import TrainCallback


@dataclass(frozen=True)
class Seams:
    callbacks: tuple[TrainCallback, ...] = ()
    writer: Writer = field(default_factory=Writer)


__all__ = ["Seams"]
