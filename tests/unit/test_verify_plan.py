"""The pure parts of merge verification: bisection, exclusion, what status shows of the output."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braid.gitops.secrets import Secrets
from braid.plan import Node
from braid.plan.verify import (
    EXCLUDE_ROUNDS,
    bounded_output,
    culprit,
    exclusion,
    max_runs,
    max_verify_runs,
    next_prefix,
)


def bisect(size: int, passes) -> tuple[tuple[int, int] | None, list[int]]:
    """Drive the plan as the merge step does; `passes(k)` says whether the first k tasks pass."""
    results: dict[int, bool] = {}
    tried: list[int] = []
    while (k := next_prefix(size, results)) is not None:
        assert k not in results, "a prefix is never verified twice"
        assert 0 < k <= size
        tried.append(k)
        results[k] = passes(k)
    return culprit(size, results), tried


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_single_culprit_is_found_in_at_most_ceil_log2_n_plus_one_runs(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 64))
    bad = data.draw(st.integers(1, size))  # the 1-based position of the task that breaks verification
    found, tried = bisect(size, lambda k: k < bad)
    assert found == (bad - 1, bad)
    assert len(tried) <= math.ceil(math.log2(size)) + 1
    assert len(tried) <= max_runs(size)
    assert tried[0] == size


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.data())
def test_any_outcomes_end_in_a_pass_fail_boundary_of_adjacent_prefixes(size: int, data: st.DataObject) -> None:
    # flaky or several culprits: whatever the runs say, the evidence is consistent with them
    outcomes = data.draw(st.lists(st.booleans(), min_size=size + 1, max_size=size + 1))
    found, tried = bisect(size, lambda k: outcomes[k])
    assert len(tried) <= max_runs(size)
    if outcomes[size]:
        assert found is None and tried == [size]
        return
    assert found is not None
    passed, failed = found
    assert failed == passed + 1
    assert not outcomes[failed]
    assert passed == 0 or outcomes[passed]


def test_a_passing_whole_takes_one_run_and_nothing_to_verify_takes_none() -> None:
    assert bisect(8, lambda k: True) == (None, [8])
    assert next_prefix(0, {}) is None
    assert max_verify_runs(8, "report") == 4
    assert max_verify_runs(8, "exclude") == (1 + EXCLUDE_ROUNDS) * 4


DAG = [Node("a", ()), Node("b", ("a",)), Node("c", ("b",)), Node("d", ()), Node("e", ("d", "b")), Node("f", ("d",))]


def test_exclusion_is_the_culprit_and_everything_built_on_it() -> None:
    assert exclusion(["b"], DAG) == ["b", "c", "e"]
    assert exclusion(["a"], DAG) == ["a", "b", "c", "e"]
    assert exclusion(["f"], DAG) == ["f"]
    assert exclusion(["d", "c"], DAG) == ["c", "d", "e", "f"]
    assert exclusion(["unknown"], DAG) == []


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_exclusion_is_closed_under_dependents_and_leaves_a_valid_integration(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 20))
    nodes = []
    for i in range(n):
        deps = data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        nodes.append(Node(f"t{i}", tuple(f"t{d}" for d in sorted(deps))))
    culprits = data.draw(st.lists(st.sampled_from([x.name for x in nodes]), min_size=1, max_size=3))
    out = set(exclusion(culprits, nodes))
    assert set(culprits) <= out
    for node in nodes:
        if any(d in out for d in node.depends_on):
            assert node.name in out
    # what is left depends only on what is left
    kept = {x.name for x in nodes} - out
    for node in nodes:
        if node.name in kept:
            assert set(node.depends_on) <= kept
    # nothing more than needed: each excluded task is a culprit or builds on an excluded one
    for node in nodes:
        if node.name in out:
            assert node.name in culprits or any(d in out for d in node.depends_on)


def test_huge_output_keeps_only_its_last_4_kib() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(200_000)) + b"the last line\n"
    shown = bounded_output(data)
    assert len(shown.encode()) <= 4096
    assert shown.startswith("...")
    assert shown.endswith("line 199999\nthe last line\n")


def test_control_characters_are_escaped_and_newlines_kept() -> None:
    shown = bounded_output(b"\x1b[31mred\x1b[0m\r\nok\x07\n\tindented\n")
    assert shown == "\\x1b[31mred\\x1b[0m\\x0d\nok\\x07\n\tindented\n"


def test_escaping_cannot_push_the_output_over_the_bound() -> None:
    shown = bounded_output(b"\x1b" * 4096)
    assert len(shown.encode()) <= 4096
    assert shown.endswith("\\x1b")


def test_invalid_utf8_is_shown_replaced() -> None:
    assert bounded_output(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"


@pytest.mark.parametrize("form", ["plain", "base64", "reversed"])
def test_a_secret_in_the_output_is_redacted(form: str) -> None:
    import base64

    secret = "ghp_s3cretTokenValue1234567890"
    shown_secret = {"plain": secret, "reversed": secret[::-1],
                    "base64": base64.b64encode(secret.encode()).decode()}[form]
    secrets = Secrets.of({"git password": secret})
    data = b"x" * 10_000 + f"\ntoken is {shown_secret} here\n".encode()
    shown = bounded_output(data, secrets.redact)
    assert shown_secret not in shown
    assert "[REDACTED]" in shown
    assert shown.endswith(" here\n")


def test_a_secret_cut_by_the_bound_is_still_redacted() -> None:
    secret = "hunter2-very-secret-password"
    secrets = Secrets.of({"git password": secret})
    # the bound falls inside the secret: its end alone must not be shown either
    data = secret.encode() + b"y" * (4096 - 3 - 10)
    shown = bounded_output(data, secrets.redact)
    assert secret[-10:] not in shown
    assert len(shown.encode()) <= 4096
