"""Focused behaviour of the CESQL engine beyond what the TCK pins down: precedence, LIKE escapes, 32-bit
integers, error kinds, attribute typing and the compile-once contract."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from math import trunc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keventing.filters.cesql import CESQLParseError, ErrorKind, compile_expression, evaluate, parse
from keventing.filters.cesql import parser as cesql_parser
from keventing.filters.cesql.like import compile_like

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def value(text: str, **attributes: object) -> object:
    result = evaluate(text, attributes)
    assert result.ok, result
    return result.value


def kinds(text: str, **attributes: object) -> list[ErrorKind]:
    return [e.kind for e in evaluate(text, attributes).errors]


# --- precedence -------------------------------------------------------------------------------------------


def test_multiplication_binds_tighter_than_addition_and_comparison() -> None:
    assert value("1 + 2 * 3 = 7") is True
    assert value("(1 + 2) * 3") == 9


def test_and_or_xor_share_one_level_and_evaluate_left_to_right() -> None:
    # Spec 3.6 puts AND, OR and XOR on one level, so this is (TRUE OR FALSE) AND FALSE, unlike most SQL.
    assert value("TRUE OR FALSE AND FALSE") is False
    assert value("TRUE OR (FALSE AND FALSE)") is True
    assert value("FALSE AND TRUE XOR TRUE") is True


def test_not_binds_tighter_than_comparison() -> None:
    # (NOT 'TRUE') = 'FALSE' compares the string 'false' with 'FALSE'; NOT ('TRUE' = 'FALSE') would be true.
    assert value("NOT 'TRUE' = 'FALSE'") is False


def test_not_before_like_negates_the_operand_not_the_match() -> None:
    # A trap worth pinning: write `type NOT LIKE ...` to negate a LIKE.
    assert kinds("NOT type LIKE 'com.%'", type="com.example") == [ErrorKind.CAST]
    assert value("type NOT LIKE 'com.%'", type="org.example") is True


def test_like_and_in_bind_tighter_than_binary_operators() -> None:
    assert value("'false' = 'a' LIKE 'tr%'") is True  # 'false' = ('a' LIKE 'tr%'), not (...) LIKE 'tr%'
    assert value("2 + 1 IN (1)") == 3  # 2 + (1 IN (1)) -> 2 + true


def test_unary_minus_and_integer_literal_signs() -> None:
    assert value("-2 * 3") == -6
    assert value("4 -1") == 3
    assert value("+5 = 5") is True
    with pytest.raises(CESQLParseError, match="may only prefix an integer literal"):
        compile_expression("+a")


def test_keywords_and_attribute_names_are_case_insensitive_but_strings_are_not() -> None:
    assert value("exists TYPE and Type = 'X'", type="X") is True
    assert value("'abc' = 'ABC'") is False


def test_and_or_short_circuit_skips_the_right_operand_entirely() -> None:
    assert evaluate("FALSE AND NOSUCHFN()", {}).ok
    assert value("TRUE OR 1 / 0 = 0") is True


# --- LIKE ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("a%b", r"a\%b", True),
        ("axb", r"a\%b", False),
        ("a_b", r"a\_b", True),
        ("axb", r"a\_b", False),
        (r"a\b", r"a\b", True),  # a backslash before any other character is an ordinary character
        ("abc", "a%", True),
        ("abc", "%c", True),
        ("abc", "%b%", True),
        ("ab", "a_%", True),
        ("a", "a_%", False),
        ("a\nb", "a_b", True),  # "_" matches any character, newlines included
        ("", "%", True),
        ("", "", True),
        ("x", "", False),
    ],
)
def test_like_patterns_with_wildcards_and_escapes(text: str, pattern: str, expected: bool) -> None:
    assert compile_like(pattern)(text) is expected


def _reference_like(pattern: str) -> re.Pattern[str]:
    parts, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append({"%": ".*", "_": "."}.get(pattern[i], re.escape(pattern[i])))
        i += 1
    return re.compile("".join(parts), re.S)


@given(st.text("ab%_\\", max_size=8), st.text("ab%_\\", max_size=10))
def test_like_matcher_agrees_with_a_regex_translation(pattern: str, text: str) -> None:
    assert compile_like(pattern)(text) is (_reference_like(pattern).fullmatch(text) is not None)


def test_like_stays_linear_on_a_hostile_pattern() -> None:
    matcher = compile_like("%a" * 30 + "%b")
    started = time.perf_counter()
    assert matcher("a" * 20_000) is False
    assert time.perf_counter() - started < 0.5


def test_like_pattern_must_be_a_string_literal() -> None:
    with pytest.raises(CESQLParseError, match="expected a string literal"):
        compile_expression("x LIKE y")


# --- integers -----------------------------------------------------------------------------------------------


def test_integer_literals_must_fit_32_bits() -> None:
    assert value("-2147483648") == INT_MIN
    with pytest.raises(CESQLParseError, match="outside the 32-bit range"):
        compile_expression("2147483648")


@pytest.mark.parametrize(
    ("text", "clamped"),
    [
        ("2147483647 + 1", INT_MAX),
        ("-2147483648 - 1", INT_MIN),
        ("65536 * 65536", INT_MAX),
        ("-2147483648 / -1", INT_MAX),
        ("-(-2147483648)", INT_MAX),
        ("ABS(-2147483648)", INT_MAX),
    ],
)
def test_integer_overflow_clamps_and_reports_a_math_error(text: str, clamped: int) -> None:
    result = evaluate(text, {})
    assert result.value == clamped
    assert [e.kind for e in result.errors] == [ErrorKind.MATH]


def test_division_truncates_towards_zero_and_modulo_follows_the_dividend() -> None:
    assert [value(t) for t in ("-7 / 2", "7 / -2", "-7 % 2", "7 % -2")] == [-3, -3, -1, 1]


def test_string_outside_32_bits_does_not_cast_to_integer() -> None:
    assert kinds("n + 0", n="2147483648") == [ErrorKind.CAST]
    assert kinds("n + 0", n=" 1") == [ErrorKind.CAST]  # no whitespace, unlike Python's int()
    assert value("n + 0", n="+0042") == 42


_int32 = st.integers(INT_MIN, INT_MAX)


@given(_int32, _int32, st.sampled_from("+-*/%"))
def test_arithmetic_matches_32_bit_reference_semantics(x: int, y: int, op: str) -> None:
    result = evaluate(f"x {op} y", {"x": x, "y": y})
    if op in "/%" and y == 0:
        assert (result.value, [e.kind for e in result.errors]) == (0, [ErrorKind.MATH])
        return
    exact = {
        "+": x + y,
        "-": x - y,
        "*": x * y,
        "/": trunc(Fraction(x, y or 1)),
        "%": x - y * trunc(Fraction(x, y or 1)),
    }[op]
    if INT_MIN <= exact <= INT_MAX:
        assert result.ok and result.value == exact
    else:
        assert result.value == max(INT_MIN, min(INT_MAX, exact)) and not result.ok


# --- errors ---------------------------------------------------------------------------------------------------


def test_each_error_kind_is_reported_with_the_spec_zero_value() -> None:
    cases = {
        "missing = 'x'": (False, ErrorKind.MISSING_ATTRIBUTE),
        "missing * 2": (0, ErrorKind.MISSING_ATTRIBUTE),
        "NOSUCH(1)": (False, ErrorKind.MISSING_FUNCTION),
        "LEFT('abc', -1)": ("abc", ErrorKind.FUNCTION_EVALUATION),
        "INT('x')": (0, ErrorKind.CAST),
        "1 % 0": (0, ErrorKind.MATH),
    }
    for text, (expected_value, kind) in cases.items():
        result = evaluate(text, {})
        assert (result.value, [e.kind for e in result.errors]) == (expected_value, [kind]), text


def test_an_operand_error_makes_the_enclosing_operator_yield_its_zero_value() -> None:
    assert evaluate("LENGTH(CONCAT('ab', missing))", {}).value == 0
    assert evaluate("NOT (missing = 'x')", {}).value is False  # not true: the error wins


def test_parse_errors_name_the_column_and_what_was_expected() -> None:
    with pytest.raises(CESQLParseError) as caught:
        compile_expression("type = = 'x'")
    assert caught.value.column == 8
    assert "unexpected '='" in str(caught.value)
    assert [e.kind for e in evaluate("type = = 'x'", {}).errors] == [ErrorKind.PARSE]


def test_missing_function_message_lists_the_supported_arities() -> None:
    (error,) = evaluate("SUBSTRING('abc')", {}).errors
    assert "SUBSTRING takes 2 or 3 argument(s), not 1" in error.message


# --- attribute values and filtering ---------------------------------------------------------------------------


def test_attribute_values_keep_their_cloudevents_types() -> None:
    assert value("n + 1", n=41) == 42
    assert value("flag AND TRUE", flag=True) is True
    assert value("n = '3000000000'", n=3_000_000_000) is True  # beyond 32 bits: seen as its string form
    assert value("data = 'AAEC'", data=b"\x00\x01\x02") is True  # Binary: base64 string form


def test_string_attributes_from_kafka_headers_cast_implicitly() -> None:
    assert value("sequence = 5", sequence="5") is True
    assert value("hop < ttl", hop="5", ttl="10") is True
    assert value("enabled = TRUE", enabled="true") is True


def test_filter_matches_only_boolean_true_without_errors() -> None:
    assert compile_expression("flag").matches({"flag": "TRUE"}) is True
    assert compile_expression("flag").matches({"flag": "yes"}) is False
    assert compile_expression("n").matches({"n": 1}) is False  # an Integer is not implicitly a Boolean
    assert compile_expression("NOT 10").matches({}) is False  # value true, but with a cast error
    assert compile_expression("missing = 'x' OR TRUE").matches({}) is False


def test_expressions_compile_once_and_evaluate_without_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    expression = compile_expression("type IN ('a', 'b') AND source LIKE 'https://%'")
    assert compile_expression("type IN ('a', 'b') AND source LIKE 'https://%'") is expression

    def no_parsing() -> None:
        raise AssertionError("evaluation must not parse")

    monkeypatch.setattr(cesql_parser, "_get_parser", no_parsing)
    assert expression.matches({"type": "b", "source": "https://x"}) is True
    assert expression.matches({"type": "c", "source": "https://x"}) is False


def test_parse_rejects_non_strings_and_empty_expressions() -> None:
    for bad in ("", "   "):
        with pytest.raises(CESQLParseError, match="empty"):
            parse(bad)
