"""LA volumes packed small and lossless, to travel to a GPU machine without network access.

Each LA ``mri_norm2.h5`` image holds at most 256 distinct float32 values (an 8-bit scan
z-scored), so it is stored exactly as those values plus a uint8 index per voxel; with the
uint8 label, lzma-compressed, a case takes about 1.3 MB instead of 2.3 MB. Reading it back
gives the very same float32 image and label (``unpack_case``); only numpy and the standard
library are needed, not SimpleITK or h5py.

A packed folder holds ``<case_id>.npz.xz`` per case and ``manifest.json``:
``{"format", "version", "spacing" (z, y, x mm), "cases": [{"id", "role", "shape"}]}``, the
roles being ``"labeled"`` and ``"validation"``.
"""

from __future__ import annotations

import io
import json
import lzma
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "semiseg-packed-la"
VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".npz.xz"
ROLES = ("labeled", "validation")


class PackError(ValueError):
    """A volume that this format cannot hold exactly, or a folder that is not a pack."""


@dataclass(frozen=True)
class PackedCase:
    """One unpacked case: image float32 (z, y, x), label uint8 (z, y, x), its role."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    role: str


def encode_case(image: np.ndarray, label: np.ndarray) -> bytes:
    """lzma bytes holding ``image`` exactly (≤ 256 distinct values) and ``label`` (uint8).

    Raises:
        PackError: more than 256 distinct values, or shapes that differ.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.shape != np.shape(label):
        raise PackError(f"image shape {image.shape} and label shape {np.shape(label)} differ")
    values, index = np.unique(image, return_inverse=True)
    if values.size > 256:
        raise PackError(f"the image holds {values.size} distinct values; this format holds at most 256")
    buffer = io.BytesIO()
    np.savez(buffer, values=values.astype(np.float32), index=index.reshape(image.shape).astype(np.uint8),
             label=np.asarray(label, dtype=np.uint8))
    return lzma.compress(buffer.getvalue(), preset=9)


def decode_case(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) from ``encode_case``'s bytes."""
    with np.load(io.BytesIO(lzma.decompress(data))) as arrays:
        image = arrays["values"][arrays["index"]]
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(arrays["label"])


def write_pack(folder: str | Path, cases: Iterable[tuple[str, str, np.ndarray, np.ndarray]],
               spacing: Sequence[float]) -> Path:
    """Pack ``(case_id, role, image, label)`` cases into ``folder``; returns the manifest's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for case_id, role, image, label in cases:
        if role not in ROLES:
            raise PackError(f"case {case_id}: role {role!r} is not one of {list(ROLES)}")
        (folder / f"{case_id}{SUFFIX}").write_bytes(encode_case(image, label))
        entries.append({"id": case_id, "role": role, "shape": list(np.shape(image))})
    manifest = {"format": FORMAT, "version": VERSION, "spacing": [float(s) for s in spacing], "cases": entries}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a packed folder.

    Raises:
        PackError: no manifest, or not this format.
    """
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PackError(f"{path}: not a packed LA folder ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("version", 0) > VERSION:
        raise PackError(f"{path}: not a {FORMAT} manifest of version ≤ {VERSION}")
    return manifest


def read_pack(folder: str | Path, roles: Sequence[str] = ROLES) -> list[PackedCase]:
    """Every case of ``roles`` in manifest order, unpacked."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    cases = []
    for entry in manifest["cases"]:
        if entry["role"] in roles:
            image, label = decode_case((folder / f"{entry['id']}{SUFFIX}").read_bytes())
            cases.append(PackedCase(entry["id"], image, label, entry["role"]))
    return cases


def pack_la(la_folder: str | Path, out: str | Path, *, labeled: int = 8, validation: int = 8) -> Path:
    """Pack the first ``labeled`` cases of the LA ``train.list`` and its last ``validation``
    (the benchmarks' validation split); returns the manifest's path."""
    from ._common import la_list
    from napari_semiseg.io import LA_SPACING_MM, read_volume
    listed = la_list(la_folder)
    chosen = [(case_id, path, "labeled") for case_id, path in listed[:labeled]]
    chosen += [(case_id, path, "validation") for case_id, path in listed[len(listed) - validation:]]

    def cases():
        for case_id, path, role in chosen:
            volume = read_volume(path)
            yield case_id, role, np.asarray(volume.array, dtype=np.float32), np.asarray(volume.label, dtype=np.uint8)

    return write_pack(out, cases(), (LA_SPACING_MM,) * 3)


__all__ = ["MANIFEST", "PackError", "PackedCase", "decode_case", "encode_case", "pack_la", "read_manifest",
           "read_pack", "write_pack"]
