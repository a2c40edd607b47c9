"""VNN-LIB in and out: the local-robustness fragment reads back bit for bit, comments
and both comparison directions are read, and every other shape is refused with one
line."""

import numpy as np
import pytest

from dalv.verify.vnnlib import (
    VnnlibError,
    format_number,
    parse_vnnlib,
    read_vnnlib,
    write_vnnlib,
)

HEAD = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(3)
)
BOX = (
    "(assert (>= X_0 0.1))\n(assert (<= X_0 0.3))\n"
    "(assert (<= 0.0 X_1))\n(assert (<= X_1 1))\n"
)


def test_eran_style_file_with_comments_and_or_of_ands():
    text = (
        "; Spec for sample id 1\n"
        + HEAD
        + "; box\n"
        + BOX
        + "(assert (or\n\t(and (>= Y_1 Y_0)) ; rival 1\n\t(and (<= Y_0 Y_2))\n))\n"
    )
    p = parse_vnnlib(text)
    np.testing.assert_array_equal(p.lo, [0.1, 0.0])
    np.testing.assert_array_equal(p.hi, [0.3, 1.0])
    assert (p.target, p.rivals, p.margin, p.n_outputs) == (0, (1, 2), 0.0, 3)
    assert p.n_excluded == 0


def test_a_lone_atom_and_a_top_level_and():
    text = HEAD + "(assert (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1)))\n"
    p = parse_vnnlib(text + "(assert (>= Y_2 Y_1))")
    assert (p.target, p.rivals) == (1, (2,))


def test_write_then_read_is_exact_with_margin_and_exclusions(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=6).astype(np.float32).astype(np.float64)
    lo, hi = np.maximum(x - 0.05, 0), np.minimum(x + 0.05, 1)
    excl = rng.uniform(size=(2, 6))
    for sep in ("every_coord", "any_coord"):
        path = tmp_path / f"q_{sep}.vnnlib"
        write_vnnlib(
            path,
            lo,
            hi,
            3,
            [1],
            5,
            margin=1e-3,
            exclude=excl,
            delta=1e-3,
            separation=sep,
            comment="a test\nsecond line",
        )
        p = read_vnnlib(path)
        assert np.array_equal(p.lo, lo) and np.array_equal(p.hi, hi)  # bit for bit
        assert (p.target, p.rivals, p.margin, p.separation) == (3, (1,), 1e-3, sep)
        np.testing.assert_array_equal(p.exclude_lo, excl - 1e-3)
        np.testing.assert_array_equal(p.exclude_hi, excl + 1e-3)


def test_holds_at_is_the_files_semantics():
    text = HEAD + BOX + "(assert (or (>= Y_1 Y_0) (>= Y_2 Y_0)))"
    p = parse_vnnlib(text)
    xs = np.array([[0.2, 0.5], [0.2, 0.5], [0.4, 0.5]])
    ys = np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 0.9], [0.0, 1.0, 1.0]])
    assert p.holds_at(xs, ys).tolist() == [True, False, False]  # tie counts; box


def test_numbers_are_written_exactly():
    for v in (0.1, 1 / 3, 1e-17, 0.0, -2.5e-9, 0.99999999999):
        s = format_number(v)
        assert "e" not in s and float(s) == v


@pytest.mark.parametrize(
    "body, match",
    [
        ("(assert (<= X_0 0.3)", "unbalanced parentheses"),
        ("(assert (<= X_0 0.3)))", "unbalanced parentheses"),
        ("(assert (<= X_9 0.3))", "X_9 is used but not declared"),
        ("(assert (<= Y_0 0.5))", "not Y_j - Y_c >= m"),
        ("(assert (>= (- (* 2 Y_1) Y_0) 0))", "not Y_j - Y_c >= m"),
        ("(assert (or (>= Y_1 Y_0) (>= Y_0 Y_2)))", "compares against classes"),
        ("(assert (>= Y_1 Y_0))(assert (>= Y_2 Y_0))", "2 output constraints"),
        ("(assert (or (and (>= Y_1 Y_0) (>= Y_2 Y_0))))", "a conjunction of 2 output"),
        ("(assert (<= (+ X_0 X_1) 1))", "over several inputs"),
        ("(assert (>= Y_1 X_0))", "mixing inputs X and outputs Y"),
        ("(check-sat)", "unsupported command 'check-sat'"),
        (
            "(assert (or (and (<= X_0 0.2) (>= X_1 0)) (and (>= X_0 0.25))))",
            "input boxes",
        ),
    ],
)
def test_other_shapes_are_refused_with_one_line(body, match):
    text = HEAD + BOX + body
    if "Y_" not in body or "X_" in body and "Y_" not in body:
        text += "\n(assert (>= Y_1 Y_0))"
    with pytest.raises(VnnlibError, match=match) as e:
        parse_vnnlib(text, source="spec.vnnlib")
    assert "\n" not in str(e.value) and str(e.value).startswith("spec.vnnlib: ")


def test_missing_bounds_and_undeclared_outputs():
    with pytest.raises(VnnlibError, match="without a lower and an upper bound: X_1"):
        parse_vnnlib(
            HEAD + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= Y_1 Y_0))"
        )
    with pytest.raises(VnnlibError, match="must all be declared"):
        parse_vnnlib("(declare-const X_0 Real)(assert (>= X_0 0))")
    with pytest.raises(VnnlibError, match="cannot read"):
        read_vnnlib("/nonexistent/spec.vnnlib")
