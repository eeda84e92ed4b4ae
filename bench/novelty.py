"""`python -m bench.novelty`: what a novelty check and an add cost with N items stored.

    python -m bench.novelty [--postgres URL] [--items 10000 100000] [--repeat 20]
                            [--json PATH]

For each backend (a fresh SQLite file; a fresh PostgreSQL schema with --postgres), each
N and each method (the offline MinHash; a 768-component embedding, as nomic-embed-text
gives), the database is filled with N random signatures in bulk, then:

- cold check: a new index (own engine, empty cache) finds the nearest item: it reads all
  N rows once, as a worker's first check does;
- warm check: the median of `--repeat` checks with nothing new stored (one index seek,
  then the comparison with all N);
- add: the median of `--repeat` adds (one write transaction);
- check after an add: the median of checks that each read the one row just added.

MinHash figures include the signature of a 400-word story; embedding figures leave out
the model call (a network round trip to the model server, not the index's cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from bench.backends import Backend
from flows.novelty import MINHASH, Method, NoveltyIndex, check_novelty, embedding_method, remember
from flows.novelty.signatures import to_bytes
from flows.novelty.table import SIGNATURES

EMBEDDING_DIMENSION = 768
FILL_BATCH = 5000
KIND = "story"
_WORDS = [f"word{i}" for i in range(3000)]
"""A vocabulary the size of a story's: random stories share few three-word shingles."""


def story(seed: int, words: int = 400) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(_WORDS, size=words))


def random_signatures(method: Method, n: int, rng: np.random.Generator) -> np.ndarray:
    if method.is_embedding:
        rows = rng.standard_normal((n, EMBEDDING_DIMENSION), dtype=np.float32)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit
    return rng.integers(0, 2**32, size=(n, 128), dtype=np.uint32)


def fill(index: NoveltyIndex, method: Method, n: int) -> float:
    """N rows in bulk, `FILL_BATCH` per transaction; returns the seconds it took."""
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    for first in range(0, n, FILL_BATCH):
        block = random_signatures(method, min(FILL_BATCH, n - first), rng)
        rows = [
            {
                "item_id": f"fill-{first + i}",
                "kind": KIND,
                "method": method.name,
                "dimension": block.shape[1],
                "signature": to_bytes(row, method),
            }
            for i, row in enumerate(block)
        ]
        index.db.write(partial(_insert, rows=rows))
    return time.perf_counter() - started


def _insert(conn: Connection, *, rows: list[dict[str, Any]]) -> None:
    conn.execute(SIGNATURES.insert(), rows)


def ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(url: str, method: Method, n: int, repeat: int) -> dict[str, Any]:
    filler = NoveltyIndex.open(url)
    try:
        fill_seconds = fill(filler, method, n)
    finally:
        filler.close()
    rng = np.random.default_rng(11)
    index = NoveltyIndex.open(url)
    try:
        if method.is_embedding:
            query = random_signatures(method, 1, rng)[0]

            def check() -> object:
                return index.nearest(kind=KIND, method=method, signature=query)

            added = iter(range(10**9))

            def add() -> object:
                signature = random_signatures(method, 1, rng)[0]
                return index.add(
                    item_id=f"new-{next(added)}", kind=KIND, method=method, signature=signature
                )
        else:
            text = story(1)

            def check() -> object:
                return check_novelty(KIND, text, model="offline", index=index)

            counter = iter(range(10**9))

            def add() -> object:
                item = next(counter)
                text = story(1000 + item)
                return remember(f"new-{item}", KIND, text, model="offline", index=index)

        started = time.perf_counter()
        check()
        cold = (time.perf_counter() - started) * 1000
        warm = ms(check, repeat)
        add_ms = ms(add, repeat)
        check(), add()  # the add's row unread: the next check reads it
        after_add = []
        for _ in range(repeat):
            started = time.perf_counter()
            check()
            after_add.append((time.perf_counter() - started) * 1000)
            add()
        shelf = index._shelves[(KIND, method.name)]
        cache_mb = shelf.rows().nbytes / 2**20
    finally:
        index.close()
    return {
        "method": "minhash" if method is MINHASH else f"embedding-{EMBEDDING_DIMENSION}",
        "items": n,
        "fill_s": round(fill_seconds, 2),
        "cold_check_ms": round(cold, 1),
        "warm_check_ms": round(warm, 2),
        "add_ms": round(add_ms, 2),
        "check_after_add_ms": round(statistics.median(after_add), 2),
        "cache_mb": round(cache_mb, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.novelty", description=__doc__)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL (a fresh schema)")
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    methods = [MINHASH, embedding_method("ollama/nomic-embed-text")]
    backends = [("sqlite", None)] + ([("postgres", args.postgres)] if args.postgres else [])
    results = []
    print(
        f"{'backend':<9}{'method':<15}{'items':>8}{'fill s':>8}{'cold ms':>9}{'warm ms':>9}"
        f"{'add ms':>8}{'+1 row ms':>10}{'cache MB':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-novelty-") as root:
        for name, pg_url in backends:
            for n in args.items:
                for method in methods:
                    with Backend(name, Path(root), pg_url).database() as db:
                        row = {"backend": name, **measure(db.url, method, n, args.repeat)}
                    results.append(row)
                    print(
                        f"{name:<9}{row['method']:<15}{n:>8}{row['fill_s']:>8}"
                        f"{row['cold_check_ms']:>9}{row['warm_check_ms']:>9}{row['add_ms']:>8}"
                        f"{row['check_after_add_ms']:>10}{row['cache_mb']:>9}",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
