"""A repository's shared tool cache: copied into an empty sandbox cache, replaced whole."""

from __future__ import annotations

from mendflow.infra.tool_cache import save_cache, seed_cache, shared_cache_dir
from tests.helpers.git import write_files


def test_seed_copies_into_an_empty_cache_only(tmp_path):
    shared = shared_cache_dir(tmp_path / "worktrees" / "m-1", tmp_path / "repo", "mypy")
    assert shared.parent == tmp_path / "worktrees" / ".shared-caches"
    private = tmp_path / "m-2.tools" / "mypy-cache"
    assert not seed_cache(shared, private)  # nothing shared yet
    write_files(shared, {"3.11/pkg/mod.meta.json": "{}"})
    private.mkdir(parents=True)  # empty: seeded
    assert seed_cache(shared, private)
    assert (private / "3.11/pkg/mod.meta.json").read_text() == "{}"
    (shared / "3.11/pkg/mod.meta.json").write_text('{"new": 1}')
    assert not seed_cache(shared, private)  # holds files already: left as it is
    assert (private / "3.11/pkg/mod.meta.json").read_text() == "{}"


def test_save_replaces_the_shared_copy_whole(tmp_path):
    shared = tmp_path / ".shared-caches" / "mypy-abc"
    write_files(shared, {"old/only.json": "{}", "same.json": "old"})
    private = tmp_path / "cache"
    assert not save_cache(private, shared)  # nothing to save
    write_files(private, {"same.json": "new", "new/only.json": "{}"})
    assert save_cache(private, shared)
    assert sorted(str(p.relative_to(shared)) for p in shared.rglob("*.json")) == [
        "new/only.json", "same.json"]
    assert (shared / "same.json").read_text() == "new"
    # no copy left half-way beside it
    assert sorted(p.name for p in shared.parent.iterdir()) == [".mypy-abc.lock", "mypy-abc"]
