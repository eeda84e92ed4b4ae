"""The structures a story can be written from: the ones shipped in `data/`, plus or
overridden by the files of the directory `LLMSCHED_STRUCTURES_DIR` names. Loaded once per
directory and cached; a bad file fails with one error naming the file and the field."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flows.structures.model import Structure

STRUCTURES_DIR_ENV = "LLMSCHED_STRUCTURES_DIR"
SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 256 * 1024
"""A structure is a page of text; a larger file is a mistake, not a structure."""
MAX_FILES = 1000
EXAMPLE = "heros-journey"


class StructureFileError(ValueError):
    """A structure file can not be read or breaks the schema; the message names the file
    and the field."""


class UnknownStructureError(ValueError):
    """A job names a structure the library does not have."""


class StructureLibrary(Mapping[str, Structure]):
    """Structures by name, in name order; `source` tells where each one came from."""

    def __init__(self, structures: Mapping[str, tuple[Structure, str]]) -> None:
        ordered = sorted(structures.items())
        self._structures = {name: structure for name, (structure, _) in ordered}
        self._sources = {name: source for name, (_, source) in ordered}

    def __getitem__(self, name: str) -> Structure:
        return self._structures[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._structures)

    def __len__(self) -> int:
        return len(self._structures)

    def source(self, name: str) -> str:
        return self._sources[name]

    @property
    def kinds(self) -> dict[str, list[str]]:
        """Each kind and the names of its structures."""
        kinds: dict[str, list[str]] = {}
        for structure in self._structures.values():
            kinds.setdefault(structure.kind, []).append(structure.name)
        return dict(sorted(kinds.items()))

    def require(self, name: str) -> Structure:
        """The structure called `name`; an unknown one fails naming the choices."""
        if (structure := self._structures.get(name.strip())) is not None:
            return structure
        example = EXAMPLE if EXAMPLE in self else next(iter(self), EXAMPLE)
        raise UnknownStructureError(
            f"structure {name!r} is unknown: pass one of {', '.join(self)} (e.g. "
            f"{example!r}), or leave it out to have one picked; your own go in the directory "
            f"{STRUCTURES_DIR_ENV} names"
        )


def structures() -> StructureLibrary:
    """The library for the current `LLMSCHED_STRUCTURES_DIR` (read at each call; the files
    are read once per directory)."""
    return load_library(os.environ.get(STRUCTURES_DIR_ENV, "").strip() or None)


@functools.cache
def load_library(user_dir: str | None = None) -> StructureLibrary:
    """The shipped structures, then `user_dir`'s files: one adding a name adds a structure,
    one reusing a shipped name replaces it. `load_library.cache_clear()` forgets them."""
    found: dict[str, tuple[Structure, str]] = {}
    shipped = resources.files("flows.structures") / "data"
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(SUFFIXES):
            for structure in _read(entry, where=f"shipped structure file {entry.name}"):
                found[structure.name] = (structure, "shipped")
    if user_dir is not None:
        users: dict[str, str] = {}
        for path in _user_files(Path(user_dir).expanduser()):
            for structure in _read(path, where=f"structure file {path}"):
                if (earlier := users.get(structure.name)) is not None:
                    raise StructureFileError(
                        f"structure file {path}: name {structure.name!r} is also defined in "
                        f"{earlier}; give one of them another name"
                    )
                users[structure.name] = str(path)
                found[structure.name] = (structure, str(path))
    return StructureLibrary(found)


def _user_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise StructureFileError(
            f"{STRUCTURES_DIR_ENV}={str(directory)!r} is not a directory: point it at a "
            "directory of structure files (*.yaml), or unset it for the shipped structures"
        )
    paths = sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if len(paths) > MAX_FILES:
        raise StructureFileError(
            f"{STRUCTURES_DIR_ENV}={str(directory)!r} holds {len(paths)} structure files; "
            f"the limit is {MAX_FILES}"
        )
    return paths


def _read(file: Traversable | Path, *, where: str) -> list[Structure]:
    """One structure (a mapping) or several (a list of mappings) from one file."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise StructureFileError(f"{where}: cannot be read ({exc})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise StructureFileError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise StructureFileError(f"{where}: not valid YAML ({exc})") from exc
    items: list[Any] = data if isinstance(data, list) else [data]
    parsed = []
    for index, item in enumerate(items):
        at = f"{where}, item {index}" if isinstance(data, list) else where
        if not isinstance(item, dict):
            raise StructureFileError(
                f"{at}: must be a mapping with the fields name, title, kind, description, "
                f"ending and acts, got {type(item).__name__}"
            )
        try:
            parsed.append(Structure.model_validate(item))
        except ValidationError as exc:
            raise StructureFileError(f"{at}: {_problems(exc)}") from None
    return parsed


def _problems(exc: ValidationError) -> str:
    """Each bad field as `acts.1.share: Input should be greater than 0`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'structure'}: {error['msg']}"
        for error in exc.errors()
    )
