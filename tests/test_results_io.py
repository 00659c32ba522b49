"""reloc.release.provenance.read_results: the recipe, the card writer and the benchmarks read their result files back, a damaged one named in one line."""

from __future__ import annotations

import pytest

from reloc.release import provenance


@pytest.fixture
def results_io():
    return provenance


def test_results_are_read_back_and_a_missing_file_gives_the_default(tmp_path, results_io):
    path = tmp_path / "r.json"
    assert results_io.read_results(path, {"parts": {}}) == {"parts": {}}
    path.write_text('{"parts": {"plain": 1}}')
    assert results_io.read_results(path, {"parts": {}}) == {"parts": {"plain": 1}}


@pytest.mark.parametrize(
    "content",
    [b'{"parts": {"plain": ', b"", b"\xff\xfe not utf-8", b"<html>a merge conflict</html>"],
    ids=["truncated", "empty", "not-utf8", "not-json"],
)
def test_a_damaged_results_file_ends_the_run_with_one_line_naming_it(tmp_path, results_io, content):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        results_io.read_results(path, {})
    message = str(stopped.value)
    assert message.startswith(f"error: {path}: not a readable results file") and "\n" not in message
    assert path.read_bytes() == content


def test_a_required_results_file_that_is_missing_is_named(tmp_path, results_io):
    with pytest.raises(SystemExit, match=r"error: .*seed-0\.json: no such results file"):
        results_io.read_results(tmp_path / "seed-0.json")
