"""Logic-game verifiers: hand-made accept / reject / edge cases (any valid solution counts)."""

from __future__ import annotations

import pytest

from pipeline.verify.games import check_countdown, check_knights_knaves, check_sudoku
from pipeline.verify.result import Score

OK = Score(1.0, True, "ok")
CD = {"numbers": [3, 5, 2, 7], "target": 16}


@pytest.mark.parametrize("answer", [
    "\\boxed{(3 + 5) * 2}", "\\boxed{2 * (3 + 5)}",  # the same solution written two ways
    "\\boxed{7 * 2 + 5 - 3}",  # another solution (7*2 = 14, +5 = 19, -3 = 16)
    "\\boxed{3 \\times 7 - 5}",  # LaTeX times: 21 - 5
    "\\boxed{(3 + 5) * 2 = 16}",  # trailing "= target" tolerated
    "\\boxed{(7 * 5 - 3) / 2}",  # exact division: 32 / 2
    "I think \\boxed{17} no wait \\boxed{(3 + 5) * 2}",  # only the last box counts
])
def test_countdown_accepts(answer):
    assert check_countdown(CD, answer) == OK


@pytest.mark.parametrize("answer,reason", [
    ("\\boxed{3 + 5 + 7}", "wrong_value"),  # 15
    ("\\boxed{(3 + 5) * 2} then \\boxed{3 + 5}", "wrong_value"),
    ("\\boxed{8 * 2}", "number_not_allowed"),  # 8 is not given
    ("\\boxed{(3 + 5) * 2 + 2 - 2}", "number_not_allowed"),  # 2 used three times
    ("\\boxed{16}", "number_not_allowed"),
    ("\\boxed{7 / (5 - 5)}", "division_by_zero"),
    ("\\boxed{-3 + 19}", "bad_expression"),  # unary minus
    ("\\boxed{2 ** 3 + 7 + 1}", "bad_expression"),  # power
    ("\\boxed{__import__('os')}", "bad_expression"),
    ("\\boxed{(3 + 5) * 2 = 17}", "wrong_value"),  # a false claimed result is not stripped
    ("\\boxed{(3 + 5}", "bad_expression"),
    ("\\boxed{" + "(" * 150 + "3" + ")" * 150 + "}", "bad_expression"),  # too long
    ("(3 + 5) * 2", "no_boxed"),
])
def test_countdown_rejects(answer, reason):
    assert check_countdown(CD, answer) == Score(0.0, False, reason)


def test_countdown_exact_rational_arithmetic():
    # 6 / (1 - 3/4) = 6 / (1/4) = 24: needs a fraction on the way (floats would give 24.000..)
    assert check_countdown({"numbers": [1, 3, 4, 6], "target": 24}, "\\boxed{6 / (1 - 3 / 4)}") == OK
    assert check_countdown({"numbers": [1, 3, 4, 6], "target": 24},
                           "\\boxed{6 / (1 - 4 / 3)}").reason == "wrong_value"  # = -18


def test_countdown_repeated_numbers_are_a_multiset():
    ref = {"numbers": [4, 4, 2], "target": 10}
    assert check_countdown(ref, "\\boxed{4 + 4 + 2}") == OK
    assert check_countdown(ref, "\\boxed{4 + 4 + 4 - 2}").reason == "number_not_allowed"


def test_countdown_bad_reference():
    with pytest.raises(ValueError, match="target"):
        check_countdown({"numbers": [1, 2]}, "\\boxed{1 + 2}")


# 4x4, boxes 2x2. Two blanks in row 1 col 1-2 and two in row 2 col 1-2: two valid completions.
PUZZLE4 = {"puzzle": "0034" "0012" "2143" "4321", "size": 4}
SOLVED_A = "1234\n3412\n2143\n4321"
SOLVED_B = "2134\n3412\n2143\n4321"  # invalid: column 1 repeats 2


def test_sudoku_accepts_valid_and_formats():
    assert check_sudoku(PUZZLE4, SOLVED_A) == OK
    assert check_sudoku(PUZZLE4, "1 2 | 3 4\n3 4 | 1 2\n2 1 | 4 3\n4 3 | 2 1") == OK
    assert check_sudoku(PUZZLE4, "Draft:\n9999\nFinal grid:\n" + SOLVED_A + "\nDone.") == OK


def test_sudoku_accepts_any_valid_completion():
    # Rows 3-4 are blank except r4 = 4321; rows 3 can be 2143 (then the grid is forced).
    # The empty puzzle admits many solutions; two different ones (checked by hand) both pass.
    empty = {"puzzle": "0" * 16, "size": 4}
    assert check_sudoku(empty, "1234\n3412\n2143\n4321") == OK
    assert check_sudoku(empty, "4321\n2143\n3412\n1234") == OK
    # Non-unique puzzle: top-left box blanks can be 12/34 or 21/43 with the rest adjusted.
    ref = {"puzzle": "0034" "0012" "0000" "0000", "size": 4}
    assert check_sudoku(ref, "1234\n3412\n2143\n4321") == OK
    assert check_sudoku(ref, "2134\n4312\n1243\n3421") == OK


@pytest.mark.parametrize("answer,reason", [
    (SOLVED_B, "bad_column"),
    ("1234\n3412\n2143\n4312", "givens_changed"),
    ("1234\n3412\n2143", "no_grid"),  # three lines only
    ("12345\n34125\n21435\n43215", "no_grid"),
    ("", "no_grid"),
])
def test_sudoku_rejects(answer, reason):
    assert check_sudoku(PUZZLE4, answer) == Score(0.0, False, reason)


def test_sudoku_rows_columns_boxes():
    blank = {"puzzle": "0" * 16, "size": 4}
    assert check_sudoku(blank, "1234\n1234\n3412\n4321").reason == "bad_column"
    assert check_sudoku(blank, "1123\n2341\n3412\n4231").reason == "bad_row"
    # a Latin square (rows and columns fine) whose 2x2 boxes repeat digits
    assert check_sudoku(blank, "1234\n2341\n3412\n4123").reason == "bad_box"
    # 6x6: boxes are 2 rows x 3 columns. A cyclic Latin square breaks them; a true sudoku passes.
    blank6 = {"puzzle": "0" * 36, "size": 6}
    cyclic = "\n".join("".join(str((r + c) % 6 + 1) for c in range(6)) for r in range(6))
    assert check_sudoku(blank6, cyclic).reason == "bad_box"
    good6 = "123456\n456123\n234561\n561234\n345612\n612345"
    assert check_sudoku(blank6, good6) == OK
    # the same grid read with 3x2 boxes would fail: rows 1-3 cols 1-2 hold 1 2 4 5 2 3
    assert check_sudoku(blank6, "\n".join(good6.split("\n")[i] for i in (0, 2, 1, 3, 4, 5))
                        ).reason == "bad_box"


def test_sudoku_bad_reference():
    with pytest.raises(ValueError, match="sudoku"):
        check_sudoku({"puzzle": "123", "size": 4}, SOLVED_A)


def _is(p, knight):
    return {"t": "is", "p": p, "knight": knight}


# Ann: "We are both knaves." Ben says nothing useful: "Ann and I are different kinds".
# Ann knight -> statement true -> Ann a knave: contradiction, so Ann is a knave and the
# statement is false, so Ben is a knight; Ben's claim (different kinds) is then true. Unique.
KK = {"names": ["Ann", "Ben"], "statements": [
    {"speaker": 0, "claim": {"t": "and", "a": _is(0, False), "b": _is(1, False)}},
    {"speaker": 1, "claim": {"t": "diff", "p": 0}},
]}


@pytest.mark.parametrize("answer", [
    "Ann: knave\nBen: knight", "Ben: knight\nAnn: knave", "ann: Knave\nben: KNIGHT",
    "Ann is a knave.\nBen is a knight.", "- Ann: knave\n- Ben: knight",
    "Ann: knight\nBen: knight\nOn reflection:\nAnn: knave\nBen: knight",  # last line per name
])
def test_knights_accepts(answer):
    assert check_knights_knaves(KK, answer) == OK


@pytest.mark.parametrize("answer,reason", [
    ("Ann: knight\nBen: knave", "inconsistent"),
    ("Ann: knave\nBen: knave", "inconsistent"),
    ("Ann: knave", "missing_people"),
    ("Ann is a knave and Ben is a knight", "missing_people"),  # one line per person required
    ("", "missing_people"),
    ("Ann: knave\nBen: liar", "missing_people"),
])
def test_knights_rejects(answer, reason):
    assert check_knights_knaves(KK, answer) == Score(0.0, False, reason)


def test_knights_count_and_same_claims():
    # Cy: "exactly 1 of us is a knight"; Di: "Cy and I are the same kind".
    # By hand: (K,K) count=2 -> Cy lies, no. (K,N) count=1 true for Cy; Di knave says same (false)
    # -> ok. (N,K) count=1 true but Cy knave, no. (N,N) count=0, Cy's claim false ok; Di's
    # "same" true but Di knave, no. Unique: Cy knight, Di knave.
    ref = {"names": ["Cy", "Di"], "statements": [
        {"speaker": 0, "claim": {"t": "count", "k": 1}},
        {"speaker": 1, "claim": {"t": "same", "p": 0}},
    ]}
    assert check_knights_knaves(ref, "Cy: knight\nDi: knave") == OK
    for wrong in ("Cy: knight\nDi: knight", "Cy: knave\nDi: knight", "Cy: knave\nDi: knave"):
        assert check_knights_knaves(ref, wrong).reason == "inconsistent"
