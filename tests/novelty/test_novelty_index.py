"""The index lives in the database: what one process remembers, another process (or engine)
finds; each cache reads only newer rows; concurrent writers lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from flows.novelty import (
    MINHASH,
    DimensionMismatchError,
    NoveltyIndex,
    check_novelty,
    embedding_method,
    remember,
)
from flows.novelty.table import SIGNATURES
from tests.novelty.conftest import NEAR_STORY, OTHER_STORY, STORY

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 2
PER_WRITER = 40

WRITER = textwrap.dedent(
    """
    import sys
    from flows.novelty import NoveltyIndex, remember

    url, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    index = NoveltyIndex.open(url)
    import os, time
    deadline = time.monotonic() + 30
    while not os.path.exists(go):  # start together, so the writes overlap
        if time.monotonic() > deadline:
            raise SystemExit("never told to start")
        time.sleep(0.005)
    for i in range(count):
        text = f"writer {name} item {i} " + " ".join(f"w{name}{i}x{j}" for j in range(30))
        remember(f"{name}-{i}", "story", text, model="offline", index=index)
    index.close()
    """
)


def test_a_second_index_on_the_same_database_finds_what_the_first_stored(
    open_index: Callable[[], NoveltyIndex],
) -> None:
    first, second = open_index(), open_index()
    assert second.db.engine is not first.db.engine

    remember(1, "story", STORY, model="offline", index=first)
    seen = check_novelty("story", NEAR_STORY, model="offline", index=second)
    remember(2, "story", OTHER_STORY, model="offline", index=first)
    later = check_novelty("story", OTHER_STORY, model="offline", index=second)

    assert seen.nearest_item_id == "1" and seen.duplicate and seen.compared == 1
    assert later.nearest_item_id == "2" and later.duplicate and later.compared == 2


def test_the_cache_reads_only_rows_newer_than_it_holds(
    open_index: Callable[[], NoveltyIndex],
) -> None:
    writer, reader = open_index(), open_index()
    for item in range(3):
        remember(item, "story", f"{STORY} {item}", model="offline", index=writer)
    check_novelty("story", STORY, model="offline", index=reader)
    loaded: list[object] = []
    sa.event.listen(reader.db.engine, "after_cursor_execute", lambda *args: loaded.append(args[2]))

    remember(3, "story", OTHER_STORY, model="offline", index=writer)
    verdict = check_novelty("story", OTHER_STORY, model="offline", index=reader)

    assert verdict.compared == 4 and verdict.nearest_item_id == "3"
    (query,) = [q for q in loaded if "novelty_signature" in str(q)]
    assert "novelty_signature.id >" in str(query)


def test_another_process_sees_the_items_and_the_signatures_survive_byte_for_byte(
    db_url: str, index: NoveltyIndex
) -> None:
    method = embedding_method("openai/text-embedding-3-small")
    vector = np.linspace(-1, 1, 64, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    index.add(item_id="v1", kind="research", method=method, signature=vector)
    remember("s1", "story", STORY, model="offline", index=index)
    probe = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from flows.novelty import MINHASH, NoveltyIndex, embedding_method
        from flows.novelty.signatures import minhash_signature
        index = NoveltyIndex.open(sys.argv[1])
        vector = np.linspace(-1, 1, 64, dtype=np.float32)
        vector /= np.linalg.norm(vector)
        method = embedding_method("openai/text-embedding-3-small")
        a = index.nearest(kind="research", method=method, signature=vector)
        b = index.nearest(kind="story", method=MINHASH, signature=minhash_signature({STORY!r}))
        print(a.item_id, round(a.similarity, 6), b.item_id, b.similarity)
        index.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()

    assert out == ["v1", "1.0", "s1", "1.0"]


def test_concurrent_writers_in_separate_processes_lose_no_row(
    db_url: str, index: NoveltyIndex, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, str(name), str(PER_WRITER), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in range(WRITERS)
    ]
    check_novelty("story", STORY, model="offline", index=index)  # a cache from before
    go.touch()
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0, out.decode(errors="replace")

    total = WRITERS * PER_WRITER
    verdict = check_novelty("story", STORY, model="offline", index=index)
    rows = index.db.read(
        lambda conn: conn.execute(
            sa.select(SIGNATURES.c.id, SIGNATURES.c.item_id).order_by(SIGNATURES.c.id)
        ).all()
    )

    assert index.count(kind="story", method=MINHASH) == total
    assert verdict.compared == total
    assert len({item for _, item in rows}) == total
    expected = {f"{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)}
    assert {item for _, item in rows} == expected
    shelf = index._shelves[("story", MINHASH.name)]
    assert sorted(shelf.item_ids) == sorted(expected)


def test_a_signature_of_another_length_is_refused(index: NoveltyIndex) -> None:
    method = embedding_method("ollama/nomic-embed-text")
    index.add(item_id="a", kind="story", method=method, signature=np.ones(8, np.float32))

    with pytest.raises(DimensionMismatchError, match="gave 4 components"):
        index.add(item_id="b", kind="story", method=method, signature=np.ones(4, np.float32))
    with pytest.raises(DimensionMismatchError, match="gave 4 components"):
        index.nearest(kind="story", method=method, signature=np.ones(4, np.float32))
    assert index.count(kind="story", method=method) == 1


def test_opening_the_index_twice_creates_the_table_once(
    open_index: Callable[[], NoveltyIndex],
) -> None:
    first = open_index()
    remember(1, "story", STORY, model="offline", index=first)
    second = open_index()

    assert second.count(kind="story", method=MINHASH) == 1
