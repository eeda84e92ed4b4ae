"""The similarity index: signatures stored in the database next to the jobs, so every run,
worker and machine compares with the same history, and searched in process.

Each process keeps, per kind and method, a matrix of the signatures it has read and the id
of the last row; a search first reads only the rows past that id (one index seek when there
are none), then compares the text with every row at once with numpy. At 100,000 items that
is milliseconds (docs/benchmarks.md#novelty-index), so no approximate index is needed; the
first search of a process reads the whole slice once.

Rows become visible in id order, so a cursor on the id misses none: SQLite has one writer
at a time, and on PostgreSQL an insert takes a lock that only other inserts wait for, so a
later id cannot commit before an earlier one (which a sequence alone allows)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.app_database import app_database_url
from flows.novelty.signatures import Method, from_bytes, to_bytes
from flows.novelty.table import ITEM_ID_LENGTH, NOVELTY_METADATA, SIGNATURES
from scheduler_core.database import Database, create_engine
from scheduler_core.settings import SchedulerSettings

READ_BATCH = 5000
"""Rows read per round trip while loading: bounds the memory a load needs besides the matrix."""

_CREATE_LOCK_KEY = 0x0E0E17
"""PostgreSQL advisory lock held while the table is created, so that processes opening a
new database at once create it once."""


class DimensionMismatchError(ValueError):
    """A signature's length differs from the ones stored for its method, so they cannot be
    compared: the model behind the method's name changed."""


@dataclass(frozen=True)
class Nearest:
    """The most similar stored item (None when nothing was stored yet), its similarity in
    [0, 1], and how many stored items were compared."""

    item_id: str | None
    similarity: float
    compared: int


class _Shelf:
    """One kind's and method's signatures in memory: a matrix grown by doubling, the item id
    of each row, and the id of the last database row read."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self.lock = threading.Lock()
        self.matrix: np.ndarray | None = None
        self.count = 0
        self.item_ids: list[str] = []
        self.last_id = 0

    def append(self, last_id: int, item_ids: list[str], block: np.ndarray) -> None:
        if self.matrix is None:
            self.matrix = np.empty((max(len(block), 1024), block.shape[1]), self.method.dtype)
        elif block.shape[1] != self.matrix.shape[1]:
            raise DimensionMismatchError(
                f"stored signatures of {self.method.name!r} have {block.shape[1]} and "
                f"{self.matrix.shape[1]} components"
            )
        needed = self.count + len(block)
        if needed > len(self.matrix):
            rows = max(needed, 2 * len(self.matrix))
            grown = np.empty((rows, self.matrix.shape[1]), self.method.dtype)
            grown[: self.count] = self.matrix[: self.count]
            self.matrix = grown
        self.matrix[self.count : needed] = block
        self.count = needed
        self.item_ids.extend(item_ids)
        self.last_id = last_id

    def rows(self) -> np.ndarray:
        assert self.matrix is not None
        return self.matrix[: self.count]


class NoveltyIndex:
    """Stored signatures of earlier items, and the nearest one to a new signature."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._shelves: dict[tuple[str, str], _Shelf] = {}
        self._shelves_lock = threading.Lock()
        db.write(_create_table)

    @classmethod
    def open(cls, url: str | None = None) -> NoveltyIndex:
        """The index in the database at `url`, else the worker's (LLMSCHED_DATABASE_URL,
        else the SQLite file in LLMSCHED_HOME); its table is created on first use."""
        settings = SchedulerSettings()
        engine = create_engine(app_database_url(url))
        db = Database(engine, retry_seconds=settings.db_retry_seconds)
        try:
            return cls(db)
        except BaseException:
            db.dispose()
            raise

    def close(self) -> None:
        self.db.dispose()

    def add(self, *, item_id: str, kind: str, method: Method, signature: np.ndarray) -> bool:
        """Store `signature` for `item_id`; False if the item has one for `method` already
        (kept as it was). DimensionMismatchError if its length differs from the stored ones."""
        if not item_id or len(item_id) > ITEM_ID_LENGTH:
            raise ValueError(f"an item id must have 1 to {ITEM_ID_LENGTH} characters")
        data = to_bytes(signature, method)
        dimension = int(signature.shape[0])

        def insert(conn: Connection) -> bool:
            if conn.dialect.name == "postgresql":
                # Inserts wait for each other here, so ids commit in order (module doc);
                # reads do not wait.
                conn.exec_driver_sql("LOCK TABLE novelty_signature IN SHARE ROW EXCLUSIVE MODE")
            of_method = (SIGNATURES.c.kind == kind) & (SIGNATURES.c.method == method.name)
            if conn.execute(
                sa.select(SIGNATURES.c.id).where(of_method, SIGNATURES.c.item_id == item_id)
            ).first():
                return False
            stored = conn.execute(
                sa.select(SIGNATURES.c.dimension).where(of_method).limit(1)
            ).scalar()
            if stored is not None and stored != dimension:
                raise DimensionMismatchError(
                    f"{method.name!r} gave {dimension} components, but the index holds "
                    f"{kind} signatures of {stored} from it: the model behind that name has "
                    "changed. Use the new model under its own name, or keep the old one."
                )
            conn.execute(
                SIGNATURES.insert().values(
                    item_id=item_id,
                    kind=kind,
                    method=method.name,
                    dimension=dimension,
                    signature=data,
                )
            )
            return True

        return self.db.write(insert)

    def nearest(self, *, kind: str, method: Method, signature: np.ndarray) -> Nearest:
        """The stored item of `kind` most similar to `signature` under `method`, after
        reading the rows stored since the last search (by any process)."""
        shelf = self._shelf(kind, method)
        with shelf.lock:
            self._refresh(shelf, kind)
            if shelf.count == 0:
                return Nearest(item_id=None, similarity=0.0, compared=0)
            rows = shelf.rows()
            if rows.shape[1] != signature.shape[0]:
                raise DimensionMismatchError(
                    f"{method.name!r} gave {signature.shape[0]} components, but the index "
                    f"holds {kind} signatures of {rows.shape[1]} from it: the model behind "
                    "that name has changed. Use the new model under its own name."
                )
            similarities = method.similarities(rows, signature)
            best = int(np.argmax(similarities))  # the earliest of equals
            return Nearest(
                item_id=shelf.item_ids[best],
                similarity=float(similarities[best]),
                compared=shelf.count,
            )

    def count(self, *, kind: str, method: Method) -> int:
        """Rows of `kind` and `method` in the database (not only in this process's cache)."""
        query = sa.select(sa.func.count()).where(
            SIGNATURES.c.kind == kind, SIGNATURES.c.method == method.name
        )
        return int(self.db.read(lambda conn: conn.execute(query).scalar_one()))

    def _shelf(self, kind: str, method: Method) -> _Shelf:
        with self._shelves_lock:
            shelf = self._shelves.get((kind, method.name))
            if shelf is None:
                shelf = self._shelves[(kind, method.name)] = _Shelf(method)
            return shelf

    def _refresh(self, shelf: _Shelf, kind: str) -> None:
        """Append the rows past `shelf.last_id`. A read rerun after a transient fault
        resumes from what the failed one appended, as the cursor moved with it."""
        method = shelf.method

        def load(conn: Connection) -> None:
            query = (
                sa.select(SIGNATURES.c.id, SIGNATURES.c.item_id, SIGNATURES.c.signature)
                .where(
                    SIGNATURES.c.kind == kind,
                    SIGNATURES.c.method == method.name,
                    SIGNATURES.c.id > shelf.last_id,
                )
                .order_by(SIGNATURES.c.id)
                .execution_options(yield_per=READ_BATCH)
            )
            for batch in conn.execute(query).partitions():
                blobs = [row.signature for row in batch]
                width = len(blobs[0])
                if any(len(blob) != width for blob in blobs):
                    raise DimensionMismatchError(
                        f"stored {kind} signatures of {method.name!r} differ in length"
                    )
                block = from_bytes(b"".join(blobs), method).reshape(len(blobs), -1)
                shelf.append(batch[-1].id, [row.item_id for row in batch], block)

        self.db.read(load)


def _create_table(conn: Connection) -> None:
    """The table and its indexes if missing; existing ones are left as they are."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CREATE_LOCK_KEY)))
    NOVELTY_METADATA.create_all(conn)


_opened: dict[str, NoveltyIndex] = {}
_opened_lock = threading.Lock()


def novelty_index(url: str | None = None) -> NoveltyIndex:
    """This process's index for `url` (default: the worker's database), opened once."""
    url = app_database_url(url)
    with _opened_lock:
        index = _opened.get(url)
        if index is None:
            index = _opened[url] = NoveltyIndex.open(url)
        return index


def close_novelty_indexes() -> None:
    """Dispose of every index `novelty_index` opened in this process."""
    with _opened_lock:
        while _opened:
            _opened.popitem()[1].close()
