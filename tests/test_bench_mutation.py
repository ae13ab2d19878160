"""bench/mutation.py's own pieces that need no mutmut: the reviewed equivalents file stays well
formed (every entry with its change and a reason), and mutant names map to modules as mutmut
spells them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from mutation_results import mutant_globs, read_equivalents  # noqa: E402


def test_equivalents_file_is_reviewed_and_well_formed() -> None:
    entries = read_equivalents(BENCH / "equivalent-mutants.txt")
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for entry in entries:  # a module of the project (JUDGING's, or one run on its own)
        module = entry.name.rsplit(".", 1)[0]
        assert (BENCH.parent / (module.replace(".", "/") + ".py")).is_file(), entry.name
        assert "__mutmut_" in entry.name
        assert entry.why and (entry.removed or entry.added)


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eq.txt"
    path.write_text("a.b.x_f__mutmut_1\n    - x = 1\n    + x = 2\n")
    with pytest.raises(ValueError, match="needs its change and a why"):
        read_equivalents(path)
    path.write_text("    - x = 1\n")
    with pytest.raises(ValueError, match="before any mutant id"):
        read_equivalents(path)
    path.write_text("a.b.x_f__mutmut_1\n    ? x\n")
    with pytest.raises(ValueError, match="expected"):
        read_equivalents(path)
    assert read_equivalents(tmp_path / "missing.txt") == []


def test_mutant_globs_use_mutmuts_names() -> None:
    assert mutant_globs("analyzer/oauth/checks.py", ()) == ["analyzer.oauth.checks.*"]
    assert mutant_globs("analyzer/cli.py", ("main", "DecodedToken.public_claims")) == [
        "analyzer.cli.x_main__mutmut_*",
        "analyzer.cli.x\u01c1DecodedToken\u01c1public_claims__mutmut_*",
    ]
