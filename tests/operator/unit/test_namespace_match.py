"""The operator lists, at start-up, the bots and pods of the namespaces kopf will watch
(scope.py). With glob patterns it resolves them itself, so it must resolve them exactly as
kopf does: a namespace kopf watches but the listing missed would have its running pods taken
for missing ones on the first pass; one listed but not watched would be acted on by nobody."""

from __future__ import annotations

import itertools

import pytest
from wabot_operator.scope import literal_namespaces, match_namespace


@pytest.mark.parametrize(("pattern", "served", "not_served"), [
    ("team-a", ["team-a"], ["team-ab", "team-b"]),
    ("team-*", ["team-a", "team-"], ["teams", "x-team-a"]),
    ("team-?", ["team-a"], ["team-ab"]),
    ("team-[ab]", ["team-a", "team-b"], ["team-c"]),
    ("!kube-*", ["default", "team-a"], ["kube-system", "kube-public"]),
    # kopf's own examples: a later inclusion brings back only what the first glob matched...
    ("myapp-*, !*-pr-*, *pr-123", ["myapp-test", "myapp-live", "myapp-pr-123"],
     ["myapp-pr-456", "otherapp-pr-123"]),
    # ...and a leading exclusion starts from every namespace.
    ("!*-pr-*, *pr-123", ["myapp-test", "anyapp-anything", "otherapp-pr-123"],
     ["myapp-pr-456"]),
])
def test_globs_serve_what_kopf_serves(pattern: str, served: list[str],
                                      not_served: list[str]) -> None:
    assert [n for n in served if not match_namespace(n, pattern)] == []
    assert [n for n in not_served if match_namespace(n, pattern)] == []


def test_agrees_with_kopf_on_every_combination() -> None:
    """Checked against kopf's own resolution (a private function: the operator does not import
    it, so a kopf upgrade that changes it fails here, not silently in a cluster)."""
    from kopf._cogs.structs.references import match_namespace as kopf_match

    globs = ["a-*", "!*-pr-*", "*-pr-1", "b?", "!a-x", "*", "!*", "[ab]-*"]
    names = ["a-1", "a-pr-1", "a-pr-2", "b-pr-1", "b1", "bb", "a-x", "c", "b-2"]
    for n in range(1, 4):
        for parts in itertools.permutations(globs, n):
            pattern = ", ".join(parts)
            for name in names:
                assert match_namespace(name, pattern) == kopf_match(name, pattern), (
                    name, pattern)


def test_only_patterns_without_glob_characters_are_literal() -> None:
    assert literal_namespaces(["team-a", "team-*", "!kube-system", "t?", "[ab]"]) == ["team-a"]
