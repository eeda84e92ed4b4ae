"""What a text is compared by: an embedding from a model, or, offline, a MinHash signature of
its three-word shingles (datasketch). Each method has a name stored with every signature,
so only signatures of one method (one model, or one MinHash configuration) are compared, and
a vectorised similarity of one signature against a matrix of stored ones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

SHINGLE_WORDS = 3
"""Words per shingle: one changed word alters at most three shingles, while independent
texts almost never share a three-word sequence beyond stock phrases."""

MINHASH_PERMUTATIONS = 128
"""Hash functions per signature: the Jaccard estimate's standard error is at most
1/sqrt(128) ≈ 0.044, small beside the gap between repeats and independent texts."""

MINHASH_SCHEME = "affine32"
MINHASH_SEED = 1

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Method:
    """A way to compare texts. `name` is stored with each signature; `dtype` is the
    signature's element type (embeddings: unit-length float32; MinHash: uint32)."""

    name: str
    dtype: type[np.generic]

    @property
    def is_embedding(self) -> bool:
        return self.dtype is np.float32

    def similarities(self, matrix: np.ndarray, signature: np.ndarray) -> np.ndarray:
        """The similarity in [0, 1] of `signature` to each row of `matrix`."""
        if self.is_embedding:
            # Cosine of unit vectors; opposite directions are as unlike as unrelated ones.
            cosines: np.ndarray = np.clip(matrix @ signature, 0.0, 1.0)
            return cosines
        # The share of equal hash values: datasketch's `MinHash.jaccard`, for many at once.
        shares: np.ndarray = np.count_nonzero(matrix == signature, axis=1) / signature.shape[0]
        return shares


MINHASH = Method(
    name=f"minhash-{MINHASH_SCHEME}-{MINHASH_PERMUTATIONS}-w{SHINGLE_WORDS}", dtype=np.uint32
)
"""The offline fallback. Its name carries every parameter that changes a signature."""


def embedding_method(model: str) -> Method:
    """The method of an embedding model (`provider/name`): one per model, as two models'
    vectors are not comparable."""
    return Method(name=model, dtype=np.float32)


def shingles(text: str) -> set[bytes]:
    """The text's lowercased three-word sequences (a shorter text: its words as one)."""
    words = _WORD.findall(text.lower())
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words).encode()}
    return {
        " ".join(words[i : i + SHINGLE_WORDS]).encode()
        for i in range(len(words) - SHINGLE_WORDS + 1)
    }


def minhash_signature(text: str) -> np.ndarray:
    """The text's MinHash signature (uint32 values)."""
    sketch = _minhash_class()(
        num_perm=MINHASH_PERMUTATIONS,
        seed=MINHASH_SEED,
        scheme=MINHASH_SCHEME,
        permutations=_permutations(),
    )
    sketch.update_batch(list(shingles(text)))
    return np.asarray(sketch.hashvalues, dtype=np.uint32)


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """Made once: they depend only on the seed, and making them costs more than hashing."""
    permutations: tuple[np.ndarray, np.ndarray] = _minhash_class()(
        num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED, scheme=MINHASH_SCHEME
    ).permutations
    return permutations


def _minhash_class() -> Any:
    """datasketch's MinHash, imported at first use: the package imports SciPy (about
    0.7 s), which every command line call and worker start would pay otherwise."""
    from datasketch import MinHash

    return MinHash


def embedding_signature(vector: list[float]) -> np.ndarray:
    """The vector scaled to unit length as float32, so a dot product is the cosine."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("an embedding of length zero has no direction to compare")
    return array / norm


def to_bytes(signature: np.ndarray, method: Method) -> bytes:
    """Little-endian, so a signature reads the same on any machine."""
    return signature.astype(np.dtype(method.dtype).newbyteorder("<"), copy=False).tobytes()


def from_bytes(data: bytes, method: Method) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(method.dtype).newbyteorder("<")).astype(
        method.dtype, copy=False
    )
