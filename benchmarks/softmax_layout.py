"""Benchmark 2b: cross entropy in the usual (n, K) layout vs the class-major view the losses use on a CPU.

``losses.base.class_major`` decides, per batch, whether the losses run their softmax over
dim 1 of ``logits.t().unsqueeze(0)`` (shape (1, K, n): PyTorch's K-dimensional loss form,
vectorised along the batch) instead of dim 1 of ``logits`` (a per-row loop over K classes,
which PyTorch's CPU kernels vectorise only when K is at least the SIMD width). The values
are the same; this script measures ``F.cross_entropy`` forward + backward both ways on random
logits, interleaved in one process, and prints the median ratio (class-major / usual) and
whether the rule picked the faster layout on this CPU.

    .venv/bin/python benchmarks/softmax_layout.py --threads 1
"""

from __future__ import annotations

import argparse

import _common
import torch
import torch.nn.functional as F

from losses.base import class_major


def timed(fn, reps: int):
    def run() -> None:
        for _ in range(reps):
            fn()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="2,3,5,8,10,16,32,100,1000")
    ap.add_argument("--batches", default="64,128,512,2048")
    ap.add_argument("--reps", type=int, default=200, help="forward+backward calls per timed sample")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark 2b: cross entropy fwd+bwd, class-major view / usual layout (CPU)")
    rows, results = [], []
    wrong = 0
    for k in (int(v) for v in args.classes.split(",")):
        for n in (int(v) for v in args.batches.split(",")):
            g = torch.Generator().manual_seed(0)
            logits = torch.randn(n, k, generator=g).requires_grad_(True)
            y = torch.randint(0, k, (n,), generator=g)
            yt = y.unsqueeze(0)

            def usual() -> None:
                torch.autograd.grad(F.cross_entropy(logits, y), logits)

            def cm() -> None:
                torch.autograd.grad(F.cross_entropy(logits.t().unsqueeze(0), yt), logits)

            times = _common.interleave({"usual": timed(usual, args.reps), "class-major": timed(cm, args.reps)},
                                       rounds=args.rounds, warmup=1)
            ratio = _common.median_ratio(times["class-major"], times["usual"])
            chosen = class_major(logits.detach())
            right = (ratio < 1.0) == chosen or abs(ratio - 1.0) < 0.1  # within 10%: either is fine
            wrong += not right
            us = {name: 1e6 * _common.med(t) / args.reps for name, t in times.items()}
            rows.append([k, n, us["usual"], us["class-major"], ratio, "class-major" if chosen else "usual",
                         "yes" if right else "NO"])
            results.append({"K": k, "n": n, "usual_us": us["usual"], "class_major_us": us["class-major"],
                            "ratio": ratio, "chosen": "class-major" if chosen else "usual", "right": right})
    print(_common.table(["K", "n", "usual us", "class-major us", "class-major / usual", "class_major() picks",
                         "picks the faster (or within 10%)"], rows))
    print(f"{wrong} of {len(rows)} shapes picked the slower layout by more than 10%")
    _common.write_json(args.json, {"benchmark": "softmax_layout", "machine": info, "results": results})


if __name__ == "__main__":
    main()
