"""`bench bound` and `bench gauss` through the CLI."""

from __future__ import annotations

import pytest


def test_bound_matches_the_paper_example(cli):
    r = cli("bound", "--mi", "0", "--classes", "100")
    assert r.exit_code == 0
    assert "Theorem 4 (closed form) error lower bound: 0.9206" in r.output
    assert "Fano (exact)            error lower bound: 0.9900" in r.output


def test_bound_in_bits_with_entropy(cli):
    r = cli("bound", "--mi", "1", "--classes", "2", "--entropy", "1", "--unit", "bits")
    assert r.exit_code == 0 and "error lower bound: 0.0000" in r.output  # I = H(Y): no bound


def test_gauss_table_for_the_paper_setting(cli):
    r = cli("gauss")
    assert r.exit_code == 0
    line = next(line for line in r.output.splitlines() if line.startswith("|   1.0000 |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[:2] == ["1.0000", "1.0000"] and cells[5] == "0.1587"  # δ = 1: Bayes error Φ(-1)
    r = cli("gauss", "--delta", "0,2", "--format", "csv")
    assert r.output.splitlines()[0].startswith("sigma2,delta,mi_exact")


@pytest.mark.parametrize("args, needle", [
    (["bound", "--mi", "1", "--classes", "1"], "--classes 1"),
    (["bound", "--mi", "-1", "--classes", "10"], "must be >= 0"),
    (["bound", "--mi", "1", "--classes", "10", "--unit", "hartley"], "expected nats or bits"),
    (["gauss", "--prior", "1.5"], "--prior"),
    (["gauss", "--delta", "a,b"], "expected comma-separated numbers"),
    (["gauss", "--delta", "1", "--sigma2", "1"], "not both"),
    (["gauss", "--delta", "-1"], "delta must be >= 0"),
    # outside the mathematical range: non-finite numbers, I(X;Y) > H(Y), K < 2, σ² <= 0, a prior of 0 or 1
    (["bound", "--mi", "nan", "--classes", "10"], "--mi nan: expected a finite number"),
    (["bound", "--mi", "inf", "--classes", "10"], "--mi inf: expected a finite number"),
    (["bound", "--mi", "0", "--classes", "10", "--entropy", "nan"], "--entropy nan: expected a finite number"),
    (["bound", "--mi", "2.4", "--classes", "10"], "--mi 2.4: the mutual information I(X;Y) is at most the label "
                                                  "entropy H(Y), here ln K = 2.30259 nats"),
    (["bound", "--mi", "0.5", "--classes", "4", "--entropy", "0.25"], "is at most the label entropy H(Y), here "
                                                                       "--entropy 0.25"),
    (["bound", "--mi", "0", "--classes", "0"], "--classes 0: expected an integer >= 2"),
    (["gauss", "--sigma2", "0"], "--sigma2 0: variances must be > 0"),
    (["gauss", "--sigma2", "1,-2"], "variances must be > 0"),
    (["gauss", "--sigma2", "1,nan"], "nan is not a finite number"),
    (["gauss", "--delta", "inf"], "inf is not a finite number"),
    (["gauss", "--prior", "nan"], "--prior nan: expected a probability in (0, 1)"),
    (["gauss", "--prior", "0"], "--prior 0.0: expected a probability in (0, 1)"),
    (["gauss", "--prior", "1"], "--prior 1.0: expected a probability in (0, 1)"),
])
def test_bad_theory_input_is_one_line(cli, args, needle):
    r = cli(*args)
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.output


def test_bound_rejects_an_entropy_above_log_k(cli):
    r = cli("bound", "--mi", "0.5", "--classes", "10", "--entropy", "2.5")
    assert r.exit_code == 2 and "at most ln K = 2.30259 nats" in r.output
    r = cli("bound", "--mi", "0.5", "--classes", "4", "--entropy", "2.01", "--unit", "bits")
    assert r.exit_code == 2 and "at most log2 K = 2 bits" in r.output
    assert cli("bound", "--mi", "0.5", "--classes", "4", "--entropy", "2", "--unit", "bits").exit_code == 0


def test_mi_equal_to_the_label_entropy_is_in_range(cli):
    """The edge of the range is in it: I(X;Y) = H(Y) = log2 4 bits leaves no error to bound."""
    r = cli("bound", "--mi", "2", "--classes", "4", "--unit", "bits")
    assert r.exit_code == 0 and "Fano (exact)            error lower bound: 0.0000" in r.output
