"""Subject validation and wildcard matching, checked against brute-force references."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshbus.errors import InvalidSubject
from meshbus.subjects import (
    SubjectIndex,
    matches,
    overlaps,
    validate_group,
    validate_pattern,
    validate_subject,
)

TOKEN_CHARS = "abcXYZ019_-"
token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=6)
small_token = st.sampled_from(["a", "b", "c"])
subject = st.lists(token, min_size=1, max_size=6).map(".".join)
small_subject = st.lists(small_token, min_size=1, max_size=4).map(".".join)


@st.composite
def small_pattern(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(st.sampled_from(["a", "b", "c", "*"]), min_size=0, max_size=4))
    if not tokens or draw(st.booleans()):
        tokens.append(draw(st.sampled_from(["a", "*", ">"])))
    return ".".join(tokens)


def reference_match(pattern: str, subject: str) -> bool:
    """Wildcards translated into a regular expression: an independent implementation."""
    parts = []
    for tok in pattern.split("."):
        parts.append({"*": r"[^.]+", ">": r"[^.]+(?:\.[^.]+)*"}.get(tok, re.escape(tok)))
    return re.fullmatch(r"\.".join(parts), subject) is not None


ALL_SMALL_SUBJECTS = [".".join(p) for n in range(1, 6) for p in itertools.product("abcd", repeat=n)]


@given(subject)
def test_valid_subjects_validate(value: str) -> None:
    if len(value) <= 255:
        assert validate_subject(value) == value
        assert validate_pattern(value) == value


@given(st.text(max_size=20))
def test_validation_agrees_with_the_grammar(value: str) -> None:
    ok = re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value) is not None
    if ok:
        assert validate_subject(value) == value
    else:
        with pytest.raises(InvalidSubject):
            validate_subject(value)


@given(small_pattern(), small_subject)
def test_matches_agrees_with_a_regex_reference(pattern: str, value: str) -> None:
    validate_pattern(pattern)
    assert matches(pattern, value) == reference_match(pattern, value)


@given(small_pattern(), small_pattern())
def test_overlaps_iff_some_subject_matches_both(first: str, second: str) -> None:
    expected = any(
        reference_match(first, s) and reference_match(second, s) for s in ALL_SMALL_SUBJECTS
    )
    assert overlaps(first, second) == expected
    assert overlaps(second, first) == expected


@given(st.lists(small_pattern(), max_size=8), small_subject)
def test_index_finds_exactly_the_matching_patterns(patterns: list[str], value: str) -> None:
    index: SubjectIndex[int] = SubjectIndex()
    for number, pattern in enumerate(patterns):
        index.add(pattern, number)
    expected = {n for n, p in enumerate(patterns) if matches(p, value)}
    assert set(index.lookup(value)) == expected
    assert index.lookup(value) == index.lookup(value)  # cached answer is the same
    for number, pattern in enumerate(patterns):
        index.remove(pattern, number)
    assert index.lookup(value) == ()
    assert len(index) == 0


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("a..b", "empty token"),
        ("a.*", "wildcard"),
        ("a b", "' '"),
        ("x" * 256, "256 characters"),
    ],
)
def test_invalid_subjects_say_why(bad: str, why: str) -> None:
    with pytest.raises(InvalidSubject, match=re.escape(why)):
        validate_subject(bad)


@pytest.mark.parametrize("bad", ["a.>.b", ">.a", "a.**", "a*", "", "a.", 7, None])
def test_invalid_patterns(bad: object) -> None:
    with pytest.raises(InvalidSubject):
        validate_pattern(bad)


def test_non_str_subject_is_invalid_subject_and_value_error() -> None:
    with pytest.raises(ValueError, match="str, not bytes"):
        validate_subject(b"a.b")


@pytest.mark.parametrize("bad", ["", "a.b", "g*", "a b", "x" * 256])
def test_invalid_groups(bad: str) -> None:
    with pytest.raises(InvalidSubject):
        validate_group(bad)
