"""FFCV ``.beton`` files: the schema and sidecar, writing, and reading them back as a :class:`Source`.

A ``.beton`` written here holds the fields ``image`` (RGB), ``label`` (int), ``index`` (the sample's
index in the source it came from) and, when the source provides them, ``latent`` (an array per
sample, e.g. 3DIEBench's rotation and lighting latents), ``object_id`` and ``view_id``.

Beside each ``FILE.beton`` lies a sidecar ``FILE.beton.json``: schema version, fields, sample
count, source name and split, class count, image sizes, skipped samples, and the file's size and
fingerprint. It is what makes a file trustworthy: a ``.beton`` without a sidecar, from another
schema version, or whose size or fingerprint no longer matches (a truncated copy) is refused with a
:class:`~selfsup.errors.DataError` saying how to rewrite it.

Writes are atomic (temporary file, then rename). An unreadable image is reported by its path and is
either fatal or skipped (and listed in the sidecar) depending on ``on_error``; a partial file is
never left behind.

Each row's bytes also have a CRC32 in the sidecar, checked when a loader first reads the row
(:mod:`.verify`): damage in the middle of a file is a one-line :class:`DataError`, not silent.

Modules: :mod:`.schema` (sidecar, fingerprint, validation), :mod:`.writer`, :mod:`.reader`,
:mod:`.verify` (row checksums, whole-file verification).
Converting a recipe's source once and caching it is :mod:`selfsup.data.beton_cache`.
"""

from .reader import BetonSource, is_train_split, resolve_beton_path
from .schema import SCHEMA_VERSION, beton_info, fingerprint, sidecar_path
from .verify import RowChecker, verify_beton
from .writer import write_beton

__all__ = [
    "SCHEMA_VERSION",
    "BetonSource",
    "RowChecker",
    "beton_info",
    "fingerprint",
    "is_train_split",
    "resolve_beton_path",
    "sidecar_path",
    "verify_beton",
    "write_beton",
]
