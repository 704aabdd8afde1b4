"""Bad user data: one ``error:`` line naming the file and what is wrong, exit 2, nothing trained.

One case runs the console script in a subprocess, as a user does; the others run the same app in this
process (a new interpreter each would cost more than the case itself).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import bench_inprocess
from tests.fixtures_data import write_imagefolder, write_npz
from tests.test_datasets_kinds import BENCH, ENV, write_registry


def _no_classes(d: Path) -> tuple[dict, str, str]:
    (d / "pics" / "train").mkdir(parents=True)
    (d / "pics" / "test").mkdir()
    return {"kind": "imagefolder", "params": {"path": "pics"}}, str(d / "pics" / "train"), "has no class subfolders"


def _missing_from_test(d: Path) -> tuple[dict, str, str]:
    write_imagefolder(d / "pics", n_train=2, n_test=2, classes=3)
    for f in (d / "pics" / "test" / "class_2").iterdir():
        f.unlink()
    (d / "pics" / "test" / "class_2").rmdir()
    return {"kind": "imagefolder", "params": {"path": "pics"}}, str(d / "pics"), "classes class_2 missing from test/"


def _mixed_sizes(d: Path) -> tuple[dict, str, str]:
    from PIL import Image

    write_imagefolder(d / "pics", n_train=2, n_test=2, classes=2)
    odd = d / "pics" / "train" / "class_1" / "img_0001.png"
    Image.new("RGB", (20, 24)).save(odd)
    return {"kind": "imagefolder", "params": {"path": "pics"}}, str(odd), "need params.size"


def _npz_without_key(d: Path) -> tuple[dict, str, str]:
    write_npz(d / "a.npz", y_test=None)
    return {"kind": "npz", "params": {"path": "a.npz"}}, str(d / "a.npz"), "has no y_test"


def _npz_labels_out_of_range(d: Path) -> tuple[dict, str, str]:
    write_npz(d / "a.npz", n_test=40, y_test=np.full(40, 12, dtype=np.int64))
    return {"kind": "npz", "params": {"path": "a.npz"}}, str(d / "a.npz"), "y_test ranges over [12, 12], outside the 10 classes"


def _target_wrong_dtype(d: Path) -> tuple[dict, str, str]:
    (d / "bad_data.py").write_text(
        "import numpy as np\n"
        "def splits():\n"
        "    x = np.zeros((8, 1, 4, 4), dtype=np.uint8)\n"
        "    return {'train_x': x, 'train_y': np.zeros(8, dtype=np.float32), 'test_x': x,\n"
        "            'test_y': np.zeros(8, dtype=np.int64), 'class_names': ['a', 'b']}\n")
    return {"kind": "target", "params": {"target": "bad_data:splits"}}, "bad_data", "train_y is torch.float32 (8,); expected int64"


@pytest.mark.parametrize("make", [_no_classes, _missing_from_test, _mixed_sizes, _npz_without_key,
                                  _npz_labels_out_of_range, _target_wrong_dtype])
def test_bad_user_data_is_one_error_line_exit_2_and_nothing_trained(tmp_path: Path, make) -> None:
    dataset, where, problem = make(tmp_path)
    reg = write_registry(tmp_path, dataset, epochs=1)
    args = ["run", "--grid", "g", "--registry", str(reg), "--results", str(tmp_path / "results"), "--plain"]
    if make is _target_wrong_dtype:  # the user's module is imported: a process of its own
        r = subprocess.run([*BENCH, *args], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    else:
        r = bench_inprocess(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and where in errors[0] and problem in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "results").rglob("*.parquet"))
