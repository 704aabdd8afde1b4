"""Check every loss of a plan once, before any training: import, parameters, one forward and backward.

A broken loss otherwise shows up only while training, one cell at a time, in torch's words
(``grad can be implicitly created only for scalar outputs``). Here it is one
:class:`~bench.errors.BenchError` line naming the loss, what was wrong and what is expected.
"""

from __future__ import annotations

import inspect
import traceback
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, closest, exception_line
from bench.config.registry import import_target
from losses.hooks import PRIORS_HOOK, PROGRESS_HOOK

PROBE_BATCH = 8  # samples in the probe batch: every class appears for K <= 8, and the batch is tiny
PROBE_SEED = 0


def user_frame(tb: traceback.StackSummary | list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame of ``tb`` in the user's own code: not torch's, not the standard library's.

    A loss that fails inside ``loss.backward()`` raises from torch's autograd; the line a user can
    fix is the last one of theirs (their loss file, or the harness line that called it).
    """
    import torch

    skip = (str(Path(torch.__file__).parent), str(Path(inspect.__file__).parent))
    frames = [f for f in tb if not str(Path(f.filename).resolve()).startswith(skip)]
    return frames[-1] if frames else (tb[-1] if tb else None)


def where(exc: BaseException) -> str:
    """`` at file.py:LINE`` of the user frame that raised ``exc`` ("" when there is none)."""
    frame = user_frame(traceback.extract_tb(exc.__traceback__))
    return f" at {Path(frame.filename).name}:{frame.lineno}" if frame is not None else ""


def _fits(value: Any, expected: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``expected``; None when the annotation is not a simple type."""
    origin = typing.get_origin(expected)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        results = [_fits(value, arg) for arg in typing.get_args(expected)]
        return None if any(r is None for r in results) else any(results)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:  # YAML writes 2 for 2.0; an int is a fine float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    return None


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def check_parameters(name: str, cls: type, params: dict[str, Any]) -> None:
    """Unknown, missing and mistyped constructor parameters, each named, before the class is built."""
    sig = inspect.signature(cls)
    accepted = [p for p, v in sig.parameters.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
    takes_any = any(v.kind is v.VAR_KEYWORD for v in sig.parameters.values())
    target = f"{cls.__module__}:{cls.__qualname__}"
    unknown = [k for k in params if k not in accepted]
    if unknown and not takes_any:
        raise BenchError(f"loss {name!r}: unknown parameter {unknown[0]!r}{closest(unknown[0], accepted)}; "
                         f"{target} accepts {', '.join(accepted) or 'no parameters'}")
    missing = [p for p, v in sig.parameters.items()
               if v.default is v.empty and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY) and p not in params]
    if missing:
        raise BenchError(f"loss {name!r}: missing required parameter {missing[0]!r} of {target}; "
                         f"give it in the registry: losses.{name}.params.{missing[0]}")
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the defaults' types
        hints = {}
    for key, value in params.items():
        p = sig.parameters.get(key)
        if p is None:
            continue
        expected = hints.get(key)
        if expected is None and p.default is not p.empty and p.default is not None:
            expected = type(p.default)
        if expected is None:
            continue
        if _fits(value, expected) is False:
            raise BenchError(f"loss {name!r}: parameter {key}={value!r} is a {type(value).__name__}; "
                             f"{target} expects {_type_name(expected)}")


def probe(name: str, criterion: Any, num_classes: int) -> None:
    """One forward and backward on a tiny random batch on the CPU: a finite 0-dim tensor whose
    gradient reaches the logits, as the trainer needs."""
    import torch

    gen = torch.Generator().manual_seed(PROBE_SEED)
    logits = torch.randn(PROBE_BATCH, num_classes, generator=gen).requires_grad_(True)
    targets = torch.arange(PROBE_BATCH) % num_classes
    expected = "a finite 0-dim tensor (the batch mean) with a gradient reaching the logits"
    # the probe must not move the cells' random streams, and the loss's own warnings would only
    # break the one error line (training shows them again)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # the hooks the trainer calls before training (losses/hooks.py), with uniform priors
            if hasattr(criterion, PROGRESS_HOOK):
                getattr(criterion, PROGRESS_HOOK)(0, 1)
            if hasattr(criterion, PRIORS_HOOK):
                getattr(criterion, PRIORS_HOOK)(torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64))
            out = criterion(logits, targets)
        except Exception as exc:  # noqa: BLE001 - the user's loss: report its own words and line
            raise BenchError(f"loss {name!r}: forward(logits, targets) raised {type(exc).__name__}: "
                             f"{exception_line(exc)}{where(exc)}") from None
        if not isinstance(out, torch.Tensor):
            raise BenchError(f"loss {name!r}: forward returned a {type(out).__name__}, not a tensor; expected {expected}")
        if out.dim() != 0:
            raise BenchError(f"loss {name!r}: forward returned a tensor of shape {tuple(out.shape)}; expected {expected} "
                             "(reduce it, e.g. .mean())")
        if not torch.isfinite(out):
            raise BenchError(f"loss {name!r}: forward returned {out.item()} on a random batch of {PROBE_BATCH}x"
                             f"{num_classes} logits; expected {expected}")
        if not out.requires_grad:
            raise BenchError(f"loss {name!r}: its value does not depend on the logits (no gradient: a .detach(), "
                             f".item() or torch.no_grad() in forward?); expected {expected}")
        try:
            out.backward()
        except Exception as exc:  # noqa: BLE001
            raise BenchError(f"loss {name!r}: backward raised {type(exc).__name__}: {exception_line(exc)}{where(exc)}") from None
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        raise BenchError(f"loss {name!r}: the gradient reaching the logits is "
                         f"{'missing' if logits.grad is None else 'not finite'}; expected {expected}")


def check_loss(name: str, target: str, params: dict[str, Any], num_classes: Sequence[int] = (10,),
               import_paths: Sequence[str] = ()) -> None:
    """Import, check the parameters of, build and probe one loss; any problem is one BenchError line."""
    import torch

    cls = import_target(target, import_paths)
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        raise BenchError(f"loss {name!r}: target {target!r} is not a torch.nn.Module class with forward(logits, targets)")
    check_parameters(name, cls, params)
    for k in sorted(set(num_classes)):
        try:
            criterion = cls(**params)
        except Exception as exc:  # noqa: BLE001 - the user's constructor
            raise BenchError(f"loss {name!r} with {params}: {type(exc).__name__}: {exception_line(exc)}{where(exc)}") from None
        probe(name, criterion, k)
