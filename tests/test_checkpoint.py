"""bench.train.checkpoint: the one owner of the checkpoint file (path, format, versions, reading, quarantine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.train.checkpoint import (
    READABLE_VERSIONS,
    VERSION,
    Checkpoint,
    CheckpointWriter,
    checkpoint_path,
    load_checkpoint,
    resume_state,
)
from tests.test_recipe import _cfg, _Kill, _train


def _write(path: Path, **state) -> Path:
    torch.save({"version": VERSION, "cell_id": "c", "epoch": 1, **state}, path)
    return path


def test_a_cells_checkpoint_is_its_safe_id_in_the_folder(tmp_path):
    assert checkpoint_path(tmp_path, "0123abcd") == tmp_path / "0123abcd.pt"
    assert checkpoint_path(str(tmp_path), "a/../b") == tmp_path / "a____b.pt"


def test_the_format_is_what_the_loop_writes(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(_cfg(), checkpoint=ckpt, callbacks=[_Kill(0)])
    state = load_checkpoint(ckpt, "c")
    assert set(state) == set(Checkpoint.__annotations__) and state["version"] == VERSION == max(READABLE_VERSIONS)


def test_no_file_is_no_state_and_nothing_is_written(tmp_path):
    assert resume_state(tmp_path / "c.pt", "c", False, tmp_path / "corrupt") is None
    assert list(tmp_path.iterdir()) == []


def test_a_readable_checkpoint_of_the_cell_resumes_it(tmp_path):
    path = _write(tmp_path / "c.pt", history=[])
    assert resume_state(path, "c", True, tmp_path / "corrupt")["epoch"] == 1


def test_version_1_restarts_a_validation_cell_and_keeps_the_file(tmp_path):
    path = _write(tmp_path / "c.pt", version=1)
    assert resume_state(path, "c", False, tmp_path / "corrupt")["version"] == 1
    assert resume_state(path, "c", True, tmp_path / "corrupt") is None
    assert path.exists() and not (tmp_path / "corrupt").exists()


@pytest.mark.parametrize("damage", ["other cell", "unknown version", "flipped byte", "not a zip"])
def test_a_damaged_or_foreign_checkpoint_is_moved_aside(tmp_path, capsys, damage):
    path = tmp_path / "c.pt"
    if damage == "other cell":
        _write(path, cell_id="d")
    elif damage == "unknown version":
        _write(path, version=VERSION + 1)
    elif damage == "not a zip":
        path.write_bytes(b"not a checkpoint")
    else:
        _write(path, weights=torch.arange(4096, dtype=torch.float32))
        data = bytearray(path.read_bytes())
        at = data.index(torch.arange(4096, dtype=torch.float32).numpy().tobytes()[400:416]) + 8
        data[at] ^= 0xFF  # inside the weights' member: only its CRC-32 tells
        path.write_bytes(bytes(data))
    assert resume_state(path, "c", False, tmp_path / "corrupt") is None
    assert not path.exists() and len(list((tmp_path / "corrupt").iterdir())) == 1
    assert "damaged checkpoint" in capsys.readouterr().err


def test_the_writer_lands_the_file_before_landed_returns(tmp_path):
    writer = CheckpointWriter()
    path = tmp_path / "c.pt"
    writer.submit(path, {"version": VERSION, "cell_id": "c", "epoch": 3})
    assert writer.landed(path) == path and load_checkpoint(path, "c")["epoch"] == 3
    assert writer.landed(None) is None
