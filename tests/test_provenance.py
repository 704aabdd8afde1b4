"""Code fingerprints come from the builder's and the loss's source files as they are now: an edit
shows at once in a long-lived process, and editing a native model's builder makes its cells stale."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bench.plan.code_fingerprint import _code_files, code_fingerprint
from tests.conftest import REPO, tiny_registry


def _config(arch: dict, target: str = "losses.cross_entropy:CelLoss") -> dict:
    return {"architecture": arch, "loss": {"target": target, "params": {}}}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_edit_shows_in_the_same_process_even_at_the_same_size(tmp_path):
    (tmp_path / "fp_loss.py").write_text("import torch\n\nclass L(torch.nn.Module):\n    scale = 1\n")
    (tmp_path / "fp_blocks.py").write_text("WIDTH = 8\n")
    (tmp_path / "fp_model.py").write_text("import torch\nfrom fp_blocks import WIDTH\n\ndef build(in_shape, num_classes):\n"
                                          "    return torch.nn.Linear(WIDTH, num_classes)\n")
    paths = (str(tmp_path),)
    config = _config({"source": "target", "name": "fp_model:build", "params": {}}, "fp_loss:L")
    first = code_fingerprint(config, paths)
    assert first == code_fingerprint(config, paths)
    # the model's own module and the one it imports from its folder; torch (installed) is not hashed
    assert _code_files("fp_model", paths) == [tmp_path / "fp_model.py", tmp_path / "fp_blocks.py"]

    seen = {first}
    for name, old, new in [("fp_loss.py", "scale = 1", "scale = 2"),   # same size: the mtime tells
                           ("fp_model.py", "Linear(WIDTH", "Linear(WIDTH + 1"),
                           ("fp_blocks.py", "WIDTH = 8", "WIDTH = 9")]:
        path = tmp_path / name
        before = path.stat().st_mtime_ns
        _edit(path, old, new)
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))  # a coarse file-system clock still moves
        now = code_fingerprint(config, paths)
        assert now not in seen, name
        seen.add(now)


def test_native_timm_and_torchvision_hash_the_zoo_and_the_cifar_nets_it_imports():
    files = _code_files("bench.models.zoo", ())
    assert files == [REPO / "bench" / "models" / "zoo.py", REPO / "bench" / "models" / "cifar.py"]
    prints = {s: code_fingerprint(_config({"source": s, "name": "x", "params": {}})) for s in ("native", "timm", "torchvision")}
    assert len(set(prints.values())) == 3  # the library's version is part of the library sources'


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_editing_a_native_builder_makes_its_cells_stale(tmp_path):
    # a copy of the package, so that its zoo can be edited as a user of a checkout would
    for name in ("bench", "losses"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    data = tiny_registry(n={"datasets": ["g"], "architectures": ["mlp"], "losses": ["celLoss"], "seeds": [0],
                            "train": {"epochs": 1, "batch_size": 128}})
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(data))
    r = _bench(tmp_path, "run", "--grid", "n", "--results", "res", "--plain", "--no-report")
    assert r.returncode == 0, r.stderr
    assert "stale" not in _bench(tmp_path, "status", "--grid", "n", "--results", "res").stdout

    errors = tmp_path / "bench" / "errors.py"  # imported by the zoo, but not model code: nothing goes stale
    errors.write_text(errors.read_text() + "\n# edited\n")
    assert "stale" not in _bench(tmp_path, "status", "--grid", "n", "--results", "res").stdout
    _edit(tmp_path / "bench" / "models" / "zoo.py", "nn.ReLU()]", "nn.GELU()]")  # the mlp builder's activation
    status = _bench(tmp_path, "status", "--grid", "n", "--results", "res")
    assert "1 finished cells ran an older version of their loss or model code (stale)" in status.stdout, (
        status.stdout + status.stderr)


def test_cells_stored_before_the_target_source_was_added_stay_fresh():
    # the zoo's text changed when `source: target` was added, the models it builds did not: a cell
    # stored with the fingerprint of either earlier version is fresh, one of another code is stale
    import hashlib

    from bench.config.cells import Cell
    from bench.plan.code_fingerprint import LEGACY_MODEL_FINGERPRINTS, _target_fingerprint, stale_cells

    def digest(*parts: str) -> str:  # provenance's scheme, written out: sha256 of NUL-terminated parts
        return hashlib.sha256(b"".join(p.encode() + b"\0" for p in parts)).hexdigest()[:12]

    config = _config({"source": "native", "name": "mlp", "params": {}})
    loss = _target_fingerprint("losses.cross_entropy:CelLoss", ())
    now = code_fingerprint(config)
    model_now = next(m for m in LEGACY_MODEL_FINGERPRINTS if digest(loss, m) == now)
    cells = [Cell("g", "mlp", "celLoss", "celLoss", 0, config, cell_id=f"c{i}") for i in range(4)]
    stored = {"c0": now, "c1": digest(loss, "8ec6a55aa78d"), "c2": digest(loss, "077e3eacd892"),
              "c3": digest(loss, "0123456789ab")}
    assert LEGACY_MODEL_FINGERPRINTS[model_now] == ("8ec6a55aa78d", "077e3eacd892")
    assert stale_cells(cells, stored) == ["c3"]
