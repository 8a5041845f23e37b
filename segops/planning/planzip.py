"""The zip layer of plan files: which entries a plan file may hold, read without expanding.

A plan file holds `plan.json`, optionally its signature, and `deltas/<sha256>.parquet`,
every entry stored (Parquet is compressed already). An archive is refused unless its
entries are exactly of those names, none twice, none compressed or encrypted, each with
sizes that agree, together no larger than the file (overlapping entries, the trick of
non-recursive zip bombs, add up to more); every read is bounded by the declared size.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segops.errors import PlanError

PLAN_ENTRY = "plan.json"
SIGNATURE_ENTRY = "plan.json.hmac-sha256"
DELTA_ENTRY = re.compile(r"deltas/([0-9a-f]{64})\.parquet")
MAX_PLAN_JSON = 64 << 20  # a plan.json of 1,000 destinations is about 2 MB
CHUNK = 1 << 20
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ENCRYPTED = 0x1


def open_regular(path: Path) -> io.BufferedReader:
    """Open `path` for reading if it is a regular file (a named pipe would block open())."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PlanError(f"{path}: not a regular file; give the file `segops plan -out` wrote")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def entries(archive: zipfile.ZipFile, path: Path, size: int) -> dict[str, zipfile.ZipInfo]:
    """Return the archive's entries by name, refusing any a segops plan file cannot hold."""
    found: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        where = f"{path}: entry {name[:80]!r}"
        if name in found:
            raise PlanError(f"{where} appears twice: not a plan file segops wrote")
        if name not in (PLAN_ENTRY, SIGNATURE_ENTRY) and not DELTA_ENTRY.fullmatch(name):
            raise PlanError(f"{where} is not part of a segops plan file")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & _ENCRYPTED:
            raise PlanError(f"{where} is compressed or encrypted; segops stores plan entries as is")
        if info.file_size != info.compress_size:
            raise PlanError(f"{where} declares two different sizes")
        total += info.file_size
        found[name] = info
    if total > size:
        raise PlanError(f"{path}: its entries overlap (they add up to more than the file)")
    if PLAN_ENTRY not in found:
        raise PlanError(f"{path}: not a segops plan file (no {PLAN_ENTRY})")
    return found


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    if info.file_size > MAX_PLAN_JSON:
        raise PlanError(f"{path}: {info.filename} is larger than {MAX_PLAN_JSON >> 20} MiB")
    parts: list[bytes] = []
    stream(archive, info, path, parts.append)
    return b"".join(parts)


def stream(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, sink: Callable[[bytes], Any]
) -> str:
    """Pass the entry's bytes to `sink`, never more than it declares; return their sha256."""
    digest = hashlib.sha256()
    count = 0
    with archive.open(info) as src:
        while chunk := src.read(CHUNK):
            count += len(chunk)
            if count > info.file_size:
                raise PlanError(f"{path}: entry {info.filename} is longer than it declares")
            digest.update(chunk)
            sink(chunk)
    if count != info.file_size:
        raise PlanError(f"{path}: entry {info.filename} is shorter than it declares")
    return digest.hexdigest()


def zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16
    return info
