"""Benchmark 1: the harness's training of one cell against a bare hand-written PyTorch loop.

Both sides train the same model (the paper's MLP and CNN, same init: both built right after
``torch.manual_seed(seed)``), on the same data (Fashion-MNIST from Debian, the first
``--n-train``/``--n-test`` samples), with the same loss (cross entropy), optimiser (SGD lr 1e-3,
momentum 0.9), batch size (512), per-epoch permutation (``torch.randperm`` from a generator
seeded with the cell's seed) and input normalisation, for ``--epochs`` epochs, and evaluate
test accuracy after every epoch.

* harness: ``bench.train.cell.run_cell`` on a real ``Cell`` (what ``bench run`` calls for each
  cell): model build, per-step metrics on the device, the per-step progress callback into a
  ``PlainDisplay``, per-epoch evaluation with the MI terms (float64), an atomic checkpoint
  after each epoch but the last (removed afterwards, as the driver does).
* bare: the loop below, written as one would by hand: no metrics, no callback, no checkpoint;
  only test accuracy per epoch. Batches are gathered with ``x[idx]``.
* bare+index_select: the same loop gathering batches with ``torch.index_select`` as the harness
  does (a row copy; advanced indexing of a uint8 image tensor is much slower on a CPU, see
  docs/benchmarks.md). Against it, the ratio is the harness's bookkeeping alone (metrics,
  callback, MI eval, checkpoints): the harness's celLoss is ``F.log_softmax`` then
  ``F.nll_loss``, the very operations ``F.cross_entropy`` runs in the bare loops.

Rounds alternate the order (harness, bare, bare+index_select, then reversed, ...) in one
process; the headline is the median of the per-round time ratios. Target on CPU: <= 1.05 against
both loops. The script also prints how far the trained weights are apart (same seed, data order and
float operations, so 0: bitwise equal, is expected on a CPU).

    .venv/bin/python benchmarks/harness_overhead.py            # both models
    .venv/bin/python benchmarks/harness_overhead.py --arch mlp --rounds 11
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path

import _common
import torch
import torch.nn.functional as F
from torch import nn

from bench.train import cell as execute
from bench.config.cells import expand_grid
from bench.data import Splits
from bench.train.cell import ExecOptions, run_cell
from bench.models.zoo import build_model
from bench.run.progress import PlainDisplay
from bench.config.registry import parse_registry

SEED = 0


def bare_loop(arch: str, splits: Splits, epochs: int, batch_size: int, out: dict, index_select: bool) -> None:
    """A hand-written training loop: what the harness is measured against."""
    torch.manual_seed(SEED)
    model = build_model("native", arch, splits.in_shape, splits.num_classes, {})  # the harness's model and init
    conv = arch == "cnn"
    if conv:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    a, b = 1.0 / (255.0 * splits.std[0]), splits.mean[0] / splits.std[0]  # (x/255 - mean)/std, as one affine map

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(a).sub_(b)
        return x.contiguous(memory_format=torch.channels_last) if conv else x

    gen = torch.Generator()
    gen.manual_seed(SEED)
    x, y, xt, yt = splits.train_x, splits.train_y, splits.test_x, splits.test_y
    n = len(y)
    accs = []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if index_select:
                xb, yb = torch.index_select(x, 0, idx), torch.index_select(y, 0, idx)
            else:
                xb, yb = x[idx], y[idx]
            loss = F.cross_entropy(model(prep(xb)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            correct = sum((model(prep(xt[j:j + 4096])).argmax(1) == yt[j:j + 4096]).sum() for j in range(0, len(yt), 4096))
        accs.append(int(correct) / len(yt))
    out["model"], out["test_acc"] = model, accs[-1]


def make_cells(n_train: int, n_test: int, epochs: int, batch_size: int):
    reg = parse_registry({
        "datasets": {"fashion-mnist": {"kind": "fashion-mnist", "params": {"n_train": n_train, "n_test": n_test}}},
        "architectures": {"mlp": {"source": "native", "name": "mlp"}, "cnn": {"source": "native", "name": "cnn"}},
        "losses": {"celLoss": {"target": "losses.cross_entropy:CelLoss"}},
        "grids": {"bench": {"datasets": ["fashion-mnist"], "architectures": ["mlp", "cnn"], "losses": ["celLoss"],
                            "seeds": [SEED], "train": {"epochs": epochs, "batch_size": batch_size, "optimizer": "sgd",
                                                       "lr": 0.001, "momentum": 0.9}}},
    }, source="<benchmark>")
    return {c.architecture: c for c in expand_grid(reg, "bench")}


def measure(arch: str, args: argparse.Namespace, captured: dict[str, nn.Module]) -> tuple[list, dict]:
    """Interleaved rounds of harness / bare / bare+index_select for one architecture."""
    n_train = args.n_train if arch == "mlp" else min(args.n_train, args.cnn_n_train)
    n_test = args.n_test or max(1, round(n_train / 6))  # keep Fashion-MNIST's test/train ratio
    cell = make_cells(n_train, n_test, args.epochs, args.batch_size)[arch]
    ckpt_dir = tempfile.mkdtemp(prefix="lossbench-bench1-")
    opts = ExecOptions(device="cpu", checkpoint_dir=ckpt_dir)
    memo: dict = {}
    display = PlainDisplay(stream=io.StringIO())
    harness_out: dict = {}
    bare_out: dict = {}
    fast_out: dict = {}

    def harness() -> None:
        outcome = run_cell(cell, opts, progress=lambda p: display.step(cell, p), memo=memo)
        if outcome.status != "done":
            raise SystemExit(f"harness cell {outcome.status}: {outcome.row['message']}")
        harness_out["row"], harness_out["history"] = outcome.row, outcome.history
        harness_out["model"] = captured["model"]
        for ckpt in Path(ckpt_dir).glob("*.pt"):
            ckpt.unlink()  # the driver removes a finished cell's checkpoint

    # the data both sides use: what the harness decodes for this cell
    splits = execute.load_cell_splits(cell, opts, memo)

    def bare() -> None:
        bare_loop(arch, splits, args.epochs, args.batch_size, bare_out, index_select=False)

    def bare_fast() -> None:
        bare_loop(arch, splits, args.epochs, args.batch_size, fast_out, index_select=True)

    rounds = args.rounds or (9 if arch == "mlp" else 5)
    times = _common.interleave({"harness": harness, "bare": bare, "bare+index_select": bare_fast},
                               rounds=rounds, warmup=1)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    r_bare = _common.median_ratio(times["harness"], times["bare"])
    r_fast = _common.median_ratio(times["harness"], times["bare+index_select"])
    spread_bare = _common.ratio_spread(times["harness"], times["bare"])
    spread_fast = _common.ratio_spread(times["harness"], times["bare+index_select"])

    def max_diff(a: nn.Module, b: nn.Module) -> float:
        """Largest |weight difference| relative to the largest |weight| (0.0: bitwise equal)."""
        pairs = list(zip(a.state_dict().values(), b.state_dict().values(), strict=True))
        scale = max(p.abs().max().item() for p, _ in pairs)
        return max((p - q).abs().max().item() for p, q in pairs) / scale

    diff = max(max_diff(harness_out["model"], bare_out["model"]), max_diff(harness_out["model"], fast_out["model"]))
    identical = diff == 0.0
    acc_h, acc_b = harness_out["row"]["final_test_acc"], bare_out["test_acc"]
    hist = harness_out["history"]
    eval_share = sum(h["eval_time"] for h in hist) / sum(h["epoch_time"] for h in hist)
    row = [arch, n_train, args.epochs, rounds, _common.med(times["harness"]), _common.med(times["bare"]),
           _common.med(times["bare+index_select"]),
           f"{r_bare:.3f} ({spread_bare[0]:.2f}-{spread_bare[1]:.2f})",
           f"{r_fast:.3f} ({spread_fast[0]:.2f}-{spread_fast[1]:.2f})",
           f"{_common.verdict(r_bare, 1.05)} / {_common.verdict(r_fast, 1.05)}",
           "0 (bitwise equal)" if identical else f"{diff:.1e}",
           f"{acc_h:.4f} / {acc_b:.4f}", f"{100 * eval_share:.1f}%"]
    result = {"n_train": n_train, "n_test": n_test, "epochs": args.epochs, "rounds": rounds,
              "seconds": times, "ratio_vs_bare": r_bare, "ratio_vs_bare_index_select": r_fast,
              "spread_vs_bare": spread_bare, "spread_vs_bare_index_select": spread_fast,
              "weights_identical": identical, "weights_max_rel_diff": diff, "test_acc_harness": acc_h, "test_acc_bare": acc_b,
              "harness_eval_share": eval_share}
    return row, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["mlp", "cnn", "both"], default="both")
    ap.add_argument("--n-train", type=int, default=60000, help="first N training images (Fashion-MNIST has 60000)")
    ap.add_argument("--n-test", type=int, default=0,
                    help="first N test images (default: n_train / 6, Fashion-MNIST's 10000:60000 ratio)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 9 for the MLP, 5 for the CNN)")
    ap.add_argument("--cnn-n-train", type=int, default=12000, help="training images for the CNN (its epochs are much longer)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, help="also write the figures here (default $OUT/harness_overhead.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark 1: harness step overhead (harness cell / bare PyTorch loop)")

    captured: dict[str, nn.Module] = {}
    original_build = execute.build_model

    def capturing_build(*a, **k):  # keep a handle on the harness's model to compare weights
        captured["model"] = original_build(*a, **k)
        return captured["model"]

    execute.build_model = capturing_build
    archs = ["mlp", "cnn"] if args.arch == "both" else [args.arch]
    rows, results = [], {}
    for arch in archs:
        row, results[arch] = measure(arch, args, captured)
        rows.append(row)
    print(_common.table(["model", "train imgs", "epochs", "rounds", "harness s", "bare s", "bare+index_select s",
                         "harness/bare (range)", "harness/bare+index_select (range)", "target <= 1.05 (bare / +index_select)",
                         "weights: max abs diff / max abs", "final test acc harness / bare", "eval share of harness epoch"],
                        rows))
    print("seconds are medians over rounds; ratios are medians of per-round ratios (range: min-max over rounds)")
    _common.write_json(args.json, {"benchmark": "harness_overhead", "machine": info, "results": results})


if __name__ == "__main__":
    main()
