"""Small file helpers: atomic writes and content hashes.

Every file vcal writes appears whole or not at all: it is written to a unique temp file in the
same directory and then moved into place with `os.replace`, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcal_cli.errors import CacheError, UsageError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def pause_point(name: str) -> None:
    """A named point where the kill and lock tests stop a run: when VCAL_PAUSE_AT (a shell pattern) matches `name`,
    write `name` to the file VCAL_PAUSE_FILE and wait until killed, or until that file is removed (then go on).
    Outside those tests the variable is never set and this is one dictionary lookup."""
    pattern = os.environ.get("VCAL_PAUSE_AT")
    if pattern and fnmatch.fnmatch(name, pattern):
        flag = Path(os.environ.get("VCAL_PAUSE_FILE", "vcal-paused"))
        flag.write_text(name)
        deadline = time.monotonic() + 3600
        while flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)`, then move the temp file onto `path`; remove it on any failure. A kill at any moment
    leaves either the old file or the new one, and at most a stray hidden temp file (ignored, swept by
    `vcal cache clear`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        pause_point(f"before-rename:{path.name}")
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers create 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_many(files: dict[Path, bytes]) -> list[Path]:
    """Write every file to a temp sibling first, then move them all into place in the given order. A failure while
    writing (a full disk) removes the temp files and leaves every existing file untouched: a folder that held an
    older report still holds all of it. Moving needs no space, so once written the set lands whole (a kill between
    two moves leaves the earlier ones new, the later ones old; callers put their index file last)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_sibling(path)
            staged.append((tmp, path))
            tmp.write_bytes(data)
            os.chmod(tmp, 0o666 & ~_UMASK)
        for tmp, path in staged:
            pause_point(f"before-rename:{path.name}")
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [path for _, path in staged]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-serialisable object in canonical form (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True if both paths name the same file (resolving links); False if either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def guard_outputs(outputs: dict[str, Path | None], inputs: dict[str, str | os.PathLike[str]]) -> None:
    """Before any work: every output file (by its flag) is refused in one line when it is one of the inputs (by
    what it is; resolved through links), an existing directory, or in a folder that cannot be written."""
    for flag, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        for what, src in inputs.items():
            if Path(src).exists() and same_file(src, path):
                raise UsageError(
                    f"{flag} '{path}' is {what}: writing it would destroy an input", hint="choose another path"
                )
        if path.is_dir():
            raise UsageError(f"{flag} '{path}' is a directory", hint="give a file path")
        parent = path.parent if str(path.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} '{path}': the folder '{parent}' cannot be written", hint="choose another path")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"{flag} '{path}' is read-only", hint="choose another path or make it writable")


def check_out_dir(flag: str, path: Path) -> None:
    """Before any work: an output folder whose name the filesystem refuses, or that is a file, is one line."""
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{flag} '{str(path)[:60]}' is a file, not a directory", hint="choose a directory")
        for part in path.resolve().parts:
            if len(part.encode()) > os.pathconf("/", "PC_NAME_MAX"):
                raise UsageError(f"{flag} '{str(path)[:60]}...': a name in it is longer than the filesystem allows")
    except OSError as e:
        raise UsageError(
            f"{flag} '{str(path)[:60]}' cannot be used ({e.strerror})", hint="choose another path"
        ) from None


def safetensors_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes with a canonical header (sorted keys), so equal content gives equal bytes.

    safetensors serialises its metadata map in hash order, which differs run to run; the header is
    re-dumped with sorted keys and padded to its original length, so every data offset stays valid.
    """
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    canon = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(canon) > n:  # cannot happen for serde's compact JSON; keep the original rather than guess
        return raw
    return raw[:8] + canon + b" " * (n - len(canon)) + raw[8 + n :]


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """(header, byte offset where the data starts) of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CacheError(f"'{path}' is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise CacheError(f"'{path}' is not a safetensors file (header of {n} bytes)")
        header = json.loads(f.read(n))
    return header, 8 + n
