"""Which finished cells ran on other data than their dataset holds now.

The data side of staleness, beside :mod:`bench.plan.code_fingerprint`'s code side. Each cell row
stores ``data_fingerprint`` (:mod:`bench.data.fingerprint`): the content of the decoded
dataset it trained on. When the dataset found now (another ``--data-root``, files replaced)
has another fingerprint, the cell's result stands on data that is no longer there: the cell is
*stale*, ``bench status`` and ``bench run`` say so and ``--rerun-stale`` retrains it. The
fingerprint is provenance, not identity: it never changes a cell id. Rows without one (older
stores) and datasets that cannot be read now are not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.store.status import Status

# (dataset name, {"kind", "params"}) -> the fingerprint of that dataset as found now, or None
CurrentData = Callable[[str, Mapping[str, Any]], "str | None"]


def data_stale_cells(cells: Sequence[Any], stored: Mapping[str, str], current: CurrentData) -> list[str]:
    """Ids of ``cells`` whose stored data fingerprint (``stored``: cell_id -> fingerprint) differs from
    the fingerprint of their dataset now (``current``; asked only for cells with a stored one)."""
    out = []
    for cell in cells:
        old = stored.get(cell.cell_id)
        if not old:
            continue
        now = current(cell.dataset, cell.config["dataset"])
        if now and now != old:
            out.append(cell.cell_id)
    return out


def read_only_data(data_root: Path | None, cache_dir: Path | None) -> CurrentData:
    """``current`` for read-only commands: the fingerprint from the decoded cache when it holds the
    dataset, else from decoding it in memory; no file is written or moved. None when the dataset
    cannot be read, or is generated from its parameters alone (not judged). Memoised per dataset, so a
    grid reads each once."""
    memo: dict[str, str | None] = {}

    def current(name: str, dataset: Mapping[str, Any]) -> str | None:
        from bench.data.kinds import kind_spec

        if kind_spec(dataset["kind"]).generated:
            # made from its parameters alone, which the cell's identity holds: nothing on disk can have changed
            # (bench run, which builds the data anyway, still compares it); spares a read-only command torch
            return None
        if name not in memo:
            from bench.data import load_splits

            try:
                splits = load_splits(dataset["kind"], dict(dataset["params"]), data_root, False, cache_dir,
                                     write_cache=False)
            except BenchError:
                memo[name] = None
            else:
                memo[name] = splits.provenance.fingerprint if splits.provenance else None
        return memo[name]

    return current


def data_stale_note(cells: Sequence[Any], grid: str, command: bool) -> str:
    """What status and run say of ``cells`` (stale ones) that ran on other data (``command``: with the full
    ``bench run`` line, as status says it; else the flag, as run says it)."""
    names = ", ".join(repr(n) for n in dict.fromkeys(c.dataset for c in cells))
    n = len(cells)
    head = (f"{n} finished cell{'s' * (n != 1)} ran on other data than {names} hold{'s' * (',' not in names)} now "
            f"(another data root or changed files: the content fingerprint differs; stale)")
    if command:
        return f"{head}; retrain them with: bench run --grid {grid} --rerun-stale"
    return f"{head}; they are kept as they are: retrain them with --rerun-stale"


def data_stale_finished(cells: Sequence[Any], store: Any, fingerprints: dict[str, str]) -> set[str]:
    """Finished cells of ``cells`` that ran on other data than their dataset holds now (``fingerprints``: what the
    planner read; none judged where no data was read, as on a cluster whose workers hold the data)."""
    if not fingerprints:
        return set()
    df = store.cells(["cell_id", "status", "data_fingerprint"])
    if df.empty or "data_fingerprint" not in df:
        return set()
    done = df[df["status"] == Status.DONE]
    prints = {c: f for c, f in zip(done["cell_id"].tolist(), done["data_fingerprint"].tolist()) if isinstance(f, str)}
    return set(data_stale_cells([c for c in cells if c.cell_id in prints], prints,
                                lambda name, _dataset: fingerprints.get(name)))


__all__ = ["data_stale_finished", "CurrentData", "data_stale_cells", "data_stale_note", "read_only_data"]
