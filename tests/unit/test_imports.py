"""No import cycle among pgsync_dossier's modules: the floors of docs/architecture.md point one
way. Imports inside functions count too (hiding one there does not break a cycle, it only
delays it), relative or absolute alike."""

from __future__ import annotations

from tests.import_graph import find_cycle, graph


def test_the_walk_sees_the_imports() -> None:
    edges = graph()
    assert "pgsync_dossier.pg" in edges["pgsync_dossier.catalog"]
    assert "pgsync_dossier.catalog" in edges["pgsync_dossier.session"]


def test_the_walk_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
