"""Novelty control: is a new story or research card a repeat of an earlier output, across
runs, workers and machines? An embedding similarity where the model's provider offers
embeddings, else an offline MinHash; signatures stored in the worker's database
(docs/novelty.md)."""

from flows.novelty.check import (
    KINDS,
    OFFLINE,
    NoveltyVerdict,
    acheck_novelty,
    aremember,
    check_novelty,
    remember,
)
from flows.novelty.index import (
    DimensionMismatchError,
    Nearest,
    NoveltyIndex,
    close_novelty_indexes,
    novelty_index,
)
from flows.novelty.settings import NoveltySettings, novelty_settings
from flows.novelty.signatures import MINHASH, Method, embedding_method

__all__ = [
    "KINDS",
    "MINHASH",
    "OFFLINE",
    "DimensionMismatchError",
    "Method",
    "Nearest",
    "NoveltyIndex",
    "NoveltySettings",
    "NoveltyVerdict",
    "acheck_novelty",
    "aremember",
    "check_novelty",
    "close_novelty_indexes",
    "embedding_method",
    "novelty_index",
    "novelty_settings",
    "remember",
]
