"""Workspace file access for the IDE, confined to the workspace directory.

Invariants:

* Every path a client sends is relative to the workspace root. Absolute paths,
  any ``..`` component, NUL bytes and anything that resolves (through
  symlinks, also in intermediate directories) outside the workspace are
  refused with ``forbidden_path`` before any file is touched. So is anything
  inside a ``.git`` directory: git internals are changed only through git.
* Read and write follow an in-workspace symlink to its target; rename and
  delete act on the link itself (its parent directory resolved).
* A file's version is the sha256 of its bytes. ``write`` with a version only
  succeeds if the file still has that version (``conflict`` otherwise);
  ``version: null`` means "create, the file must not exist"; no version at
  all overwrites. Check-and-replace happens under one lock, and writes are
  atomic (temp file in the same directory, fsync, rename) and keep the mode.

The methods are blocking; callers run them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    ALREADY_EXISTS,
    CONFLICT,
    IO_ERROR,
    NOT_FOUND,
    NOT_TEXT,
    PERMISSION_DENIED,
    TOO_LARGE,
    WRONG_TYPE,
    RpcError,
    app_error,
    forbidden_path,
)

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TREE_ENTRIES = 50_000
# Directories fs.tree does not descend into (at any depth).
TREE_SKIP_DIRS = frozenset({".git", "target", "logs", "dbt_packages", "__pycache__", ".kiln"})
_DRIVE = re.compile(r"^[A-Za-z]:")


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Resolved:
    rel: str  # normalized, "/"-separated, relative to the workspace ("" is the root)
    entry: Path  # the entry itself: parent resolved, last component as given
    real: Path  # fully resolved (follows a final symlink)


class Workspace:
    """Confined file operations on one workspace directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._write_lock = threading.Lock()
        umask = os.umask(0)
        os.umask(umask)
        self._new_file_mode = 0o666 & ~umask

    # -- confinement -------------------------------------------------------

    def resolve(self, path: str, *, allow_root: bool = False) -> Resolved:
        """Validate a client path; raise ``forbidden_path`` unless it stays inside."""
        if "\x00" in path:
            raise forbidden_path(path, "contains a NUL byte")
        if path.startswith(("/", "\\")) or _DRIVE.match(path):
            raise forbidden_path(path, "absolute paths are not allowed; use a workspace path")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise forbidden_path(path, "'..' is not allowed")
        if any(p.casefold() == ".git" for p in parts):
            raise forbidden_path(path, "git internals (.git) are not accessible")
        if not parts and not allow_root:
            raise forbidden_path(path, "the workspace root itself cannot be used here")
        joined = self.root.joinpath(*parts)
        real = Path(os.path.realpath(joined))
        entry = Path(os.path.realpath(joined.parent)) / joined.name if parts else self.root
        for candidate in (entry, real):
            self._check_inside(path, candidate)
        return Resolved("/".join(parts), entry, real)

    def _check_inside(self, path: str, candidate: Path) -> None:
        if candidate != self.root and not candidate.is_relative_to(self.root):
            raise forbidden_path(path, "resolves outside the workspace (symlink)")
        inner = candidate.relative_to(self.root).parts
        if any(p.casefold() == ".git" for p in inner):
            raise forbidden_path(path, "resolves into git internals (.git)")

    def relative(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix()

    # -- operations --------------------------------------------------------

    def tree(self, path: str = "") -> dict[str, Any]:
        res = self.resolve(path, allow_root=True)
        with _os_errors(path):
            if not res.real.is_dir():
                raise app_error(WRONG_TYPE, "not_a_directory", f"Not a directory: {path!r}")
            entries: list[dict[str, Any]] = []
            truncated = self._walk(res.real, res.rel, entries)
        entries.sort(key=lambda e: e["path"])
        return {"entries": entries, "truncated": truncated}

    def _walk(self, directory: Path, rel: str, out: list[dict[str, Any]]) -> bool:
        try:
            items = list(os.scandir(directory))
        except OSError:
            return False  # unreadable directory: list what we can
        for item in items:
            if len(out) >= MAX_TREE_ENTRIES:
                return True
            child_rel = f"{rel}/{item.name}" if rel else item.name
            try:
                is_link = item.is_symlink()
                if is_link:
                    target = Path(os.path.realpath(item.path))
                    self._check_inside(child_rel, target)
                is_dir = item.is_dir()  # follows links
                size = 0 if is_dir else item.stat().st_size
            except (OSError, RpcError):
                continue  # broken link, or a link leading outside: not listed
            if is_dir and item.name in TREE_SKIP_DIRS:
                continue
            out.append({"path": child_rel, "type": "dir" if is_dir else "file", "size": size})
            if is_dir and not is_link and self._walk(Path(item.path), child_rel, out):
                return True
        return False

    def read(self, path: str) -> dict[str, Any]:
        res = self.resolve(path)
        with _os_errors(path):
            size = res.real.stat().st_size
            if size > MAX_FILE_BYTES:
                raise _too_large(path, size)
            data = res.real.read_bytes()
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise app_error(NOT_TEXT, "not_text", f"Not a UTF-8 text file: {path!r}") from exc
        return {"content": content, "version": version_of(data)}

    def current_version(self, res: Resolved) -> str | None:
        try:
            return version_of(res.real.read_bytes())
        except FileNotFoundError:
            return None

    def write(self, path: str, content: str, *, check: bool, expected: str | None) -> str:
        """Write ``content``; with ``check``, only if the file is at ``expected``."""
        res = self.resolve(path)
        data = content.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise _too_large(path, len(data))
        with self._write_lock, _os_errors(path):
            if res.real.is_dir():
                raise app_error(WRONG_TYPE, "is_directory", f"Is a directory: {path!r}")
            if check:
                current = self.current_version(res)
                if current != expected:
                    raise app_error(
                        CONFLICT,
                        "conflict",
                        f"Conflict: {path!r} changed since version {expected!r}",
                        path=res.rel,
                        currentVersion=current,
                    )
            res.real.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(res.real, data)
        return version_of(data)

    def _atomic_write(self, target: Path, data: bytes) -> None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = self._new_file_mode
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".kiln-tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def rename(self, path: str, new_path: str) -> str:
        src = self.resolve(path)
        dst = self.resolve(new_path)
        with self._write_lock, _os_errors(path):
            if not os.path.lexists(src.entry):
                raise app_error(NOT_FOUND, "not_found", f"No such file or directory: {path!r}")
            if os.path.lexists(dst.entry):
                raise app_error(
                    ALREADY_EXISTS, "already_exists", f"Already exists: {new_path!r}", path=dst.rel
                )
            if src.entry.is_dir() and dst.entry.is_relative_to(src.entry):
                raise app_error(WRONG_TYPE, "invalid_move", "Cannot move a directory into itself")
            dst.entry.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src.entry, dst.entry)
        return dst.rel

    def delete(self, path: str) -> None:
        res = self.resolve(path)
        with self._write_lock, _os_errors(path):
            if res.entry.is_symlink() or not res.entry.is_dir():
                res.entry.unlink()
            else:
                shutil.rmtree(res.entry)

    def mkdir(self, path: str) -> None:
        res = self.resolve(path)
        with self._write_lock, _os_errors(path):
            if os.path.lexists(res.real) and not res.real.is_dir():
                raise app_error(WRONG_TYPE, "not_a_directory", f"Exists as a file: {path!r}")
            res.real.mkdir(parents=True, exist_ok=True)


def _too_large(path: str, size: int) -> RpcError:
    return app_error(
        TOO_LARGE,
        "too_large",
        f"File too large: {path!r} is {size} bytes (max {MAX_FILE_BYTES})",
        size=size,
        max=MAX_FILE_BYTES,
    )


@contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """Map OS errors to application errors that name the client's path."""
    try:
        yield
    except FileNotFoundError as exc:
        raise app_error(NOT_FOUND, "not_found", f"No such file or directory: {path!r}") from exc
    except IsADirectoryError as exc:
        raise app_error(WRONG_TYPE, "is_directory", f"Is a directory: {path!r}") from exc
    except NotADirectoryError as exc:
        msg = f"A parent of {path!r} is not a directory"
        raise app_error(WRONG_TYPE, "not_a_directory", msg) from exc
    except FileExistsError as exc:
        raise app_error(ALREADY_EXISTS, "already_exists", f"Already exists: {path!r}") from exc
    except PermissionError as exc:
        msg = f"Permission denied: {path!r}"
        raise app_error(PERMISSION_DENIED, "permission_denied", msg) from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.ENOTEMPTY:
            reason = "directory not empty"
        raise app_error(IO_ERROR, "io_error", f"{reason}: {path!r}") from exc
