"""Story structures: a library shipped as data (extensible from `LLMSCHED_STRUCTURES_DIR`)
and the pick of the next one to write from."""

from flows.structures.library import (
    STRUCTURES_DIR_ENV,
    StructureFileError,
    StructureLibrary,
    UnknownStructureError,
    load_library,
    structures,
)
from flows.structures.model import ENDINGS, Act, Ending, Structure
from flows.structures.selection import pick_structure

__all__ = [
    "ENDINGS",
    "STRUCTURES_DIR_ENV",
    "Act",
    "Ending",
    "Structure",
    "StructureFileError",
    "StructureLibrary",
    "UnknownStructureError",
    "load_library",
    "pick_structure",
    "structures",
]
