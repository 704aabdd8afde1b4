"""``bench bound`` and ``bench gauss``: the paper's theory on numbers the user gives.

Inputs outside their mathematical range (a negative or non-finite information, an entropy above
log K, a mutual information above the label entropy, a probability outside (0, 1), a non-positive
or non-finite variance, fewer than two classes) are one ``error:`` line and exit 2, never a NaN row.
"""

from __future__ import annotations

import math
from typing import Optional

import typer

from bench.cli.main import app, fail
from bench.errors import BenchError


def _float_list(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise BenchError(f"{what} {text!r}: expected comma-separated numbers, e.g. 1,2,5") from None
    if not values:
        raise BenchError(f"{what}: expected at least one number")
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        raise BenchError(f"{what} {text!r}: {bad} is not a finite number")
    return values


def check_bound_inputs(mi: float, classes: int, entropy: float | None, unit: str) -> float:
    """The label entropy H(Y) the bounds use, once the inputs are known to be in range."""
    if unit not in ("nats", "bits"):
        raise BenchError(f"--unit {unit!r}: expected nats or bits")
    if classes < 2:
        raise BenchError(f"--classes {classes}: expected an integer >= 2")
    for flag, value in (("--mi", mi), ("--entropy", entropy)):
        if value is not None and not math.isfinite(value):
            raise BenchError(f"{flag} {value}: expected a finite number")
    if mi < 0 or (entropy is not None and entropy < 0):
        raise BenchError("--mi and --entropy must be >= 0")
    max_h = math.log(classes) if unit == "nats" else math.log2(classes)
    log = "ln" if unit == "nats" else "log2"
    if entropy is not None and entropy > max_h * (1 + 1e-12):
        raise BenchError(f"--entropy {entropy:g}: a label entropy over {classes} classes is at most "
                         f"{log} K = {max_h:.6g} {unit}")
    h = entropy if entropy is not None else max_h
    if mi > h * (1 + 1e-12):
        given = f"--entropy {h:g}" if entropy is not None else f"{log} K = {h:.6g} {unit} (uniform labels)"
        raise BenchError(f"--mi {mi:g}: the mutual information I(X;Y) is at most the label entropy H(Y), here {given}")
    return h


@app.command()
def bound(
    mi: float = typer.Option(..., "--mi", help="Mutual information I(X;Y), between 0 and H(Y)."),
    classes: int = typer.Option(..., "--classes", "-k", help="Number of classes K (>= 2)."),
    entropy: Optional[float] = typer.Option(None, "--entropy", help="Label entropy H(Y), at most log K; default log K (uniform labels)."),
    unit: str = typer.Option("nats", "--unit", help="Unit of --mi and --entropy: nats or bits."),
) -> None:
    """Error-probability lower bounds from mutual information: Theorem 4's closed form and exact Fano."""
    from bench.paper.theory import fano_bound, theorem4_bound

    try:
        h = check_bound_inputs(mi, classes, entropy, unit)
        t4 = theorem4_bound(h, mi, classes, unit=unit)
        fano = fano_bound(h, mi, classes, unit=unit)
    except (ValueError, BenchError) as exc:
        fail(exc)
    typer.echo(f"K={classes}  H(Y)={h:.6g} {unit}  I(X;Y)={mi:.6g} {unit}")
    typer.echo(f"Theorem 4 (closed form) error lower bound: {t4:.4f}")
    typer.echo(f"Fano (exact)            error lower bound: {fano:.4f}")
    typer.echo(f"random guessing error (uniform labels):    {1 - 1 / classes:.4f}")


def gauss_rows(delta: str | None, sigma2: str | None, prior: float) -> list[dict[str, float]]:
    """The table's rows, once the separations, variances and prior are known to be in range."""
    from bench.paper.theory import gauss_table

    if delta is not None and sigma2 is not None:
        raise BenchError("give --delta or --sigma2, not both")
    if not 0 < prior < 1:  # also NaN
        raise BenchError(f"--prior {prior}: expected a probability in (0, 1)")
    if delta is not None:
        deltas = _float_list(delta, "--delta")
        if min(deltas) < 0:
            raise BenchError(f"--delta {delta}: delta must be >= 0 (it is a Mahalanobis norm)")
        return gauss_table(deltas=deltas, prior=prior)
    variances = _float_list(sigma2 or "1,2,5,10,20,50,100", "--sigma2")
    if min(variances) <= 0:
        raise BenchError(f"--sigma2 {sigma2}: variances must be > 0")
    return gauss_table(sigma2=variances, prior=prior)


@app.command()
def gauss(
    delta: Optional[str] = typer.Option(None, "--delta", help="Separations δ = sqrt(μᵀΣ⁻¹μ) >= 0, comma-separated."),
    sigma2: Optional[str] = typer.Option(None, "--sigma2", help="Variances σ² > 0 for d=1, μ=1 (default 1,2,5,10,20,50,100: the paper's Figures 12-13)."),
    prior: float = typer.Option(0.5, "--prior", help="P(y = +1), in (0, 1)."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown or csv."),
) -> None:
    """The binary Gaussian model: exact MI, its closed-form bounds, Bayes error and the error lower bounds."""
    from tabulate import tabulate

    from bench.paper.theory import GAUSS_TABLE_COLUMNS

    try:
        if fmt not in ("markdown", "csv"):
            raise BenchError(f"--format {fmt!r}: expected markdown or csv")
        rows = gauss_rows(delta, sigma2, prior)
    except (ValueError, BenchError) as exc:
        fail(exc)
    if fmt == "csv":
        import pandas as pd

        typer.echo(pd.DataFrame(rows, columns=list(GAUSS_TABLE_COLUMNS)).to_csv(index=False, float_format="%.6g"))
        return
    typer.echo(tabulate([[r[c] for c in GAUSS_TABLE_COLUMNS] for r in rows],
                        headers=["σ²", "δ", "I exact", "I lower", "I upper", "Bayes error", "P_e ≥ (Thm 4)", "P_e ≥ (Fano)"],
                        tablefmt="pipe", floatfmt=".4f"))
    typer.echo("\nMI in nats. The error lower bounds use the MI upper bound (Corollary 1); Bayes error is the best achievable.")
