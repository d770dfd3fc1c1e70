"""What a file or a folder held, kept until it changes: so that a call of ``generate()`` costs a
``stat`` per profile file, not a read and a parse, and a broken file one warning per version.

A file's *version* is its size, modification time (ns), inode and device. What was built from a
file is returned again while its version is unchanged. A file changed in the last two seconds is
read again at each look (file systems keep coarse timestamps, so a second change may not move its
version yet) but built again only when its text differs. A folder is listed again when its
modification time changes, under the same two-second rule.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from .profile_files import Unusable, clip, read_text, version_of

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A file or folder changed less than this long ago may change again within the same timestamp tick
#: (file systems keep coarse modification times): its version is not trusted alone yet.
RACY_NS = 2_000_000_000


def settled(mtime_ns: int) -> bool:
    """Whether a modification time is old enough for a version to identify the content."""
    return time.time_ns() - mtime_ns > RACY_NS


@dataclass
class _Entry(Generic[T]):
    stamp: object  # the file's version, or why it is unusable
    content: object  # the text's hash, or why it is unusable
    result: T


class FileCache(Generic[T]):
    """What ``build(path, text)`` made of each file, kept until the file changes.

    ``text`` is the file's text, or the :class:`Unusable` reason it could not be read; ``build``
    logs its own warnings. A file whose version (:func:`version_of`) is unchanged is not read
    again; one whose version changed, or changed too recently to be trusted, is read again but
    built again only when its text differs — so each problem is logged once per version of the
    file, however many calls look at it. Thread-safe.
    """

    def __init__(
        self, build: Callable[[Path, str | Unusable], T], max_bytes: int, max_files: int = 1024
    ) -> None:
        self._build = build
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._entries: dict[str, _Entry[T]] = {}
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> T:
        stamp: object
        try:
            version = version_of(path)
            stamp = version if settled(version[1]) else None
        except Unusable as exc:
            stamp = str(exc)  # the same problem warns once; another one (or a fix) rebuilds
        key = os.fspath(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and stamp is not None and entry.stamp == stamp:
                return entry.result
            text: str | Unusable
            try:
                text = read_text(path, self._max_bytes)
                content: object = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
            except Unusable as exc:
                text, content = exc, str(exc)
            if entry is not None and entry.content == content:
                entry.stamp = stamp
                return entry.result
            result = self._build(Path(path), text)
            self._entries.pop(key, None)
            if len(self._entries) >= self._max_files:  # forget the file read longest ago
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = _Entry(stamp, content, result)
            return result

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class FolderListing:
    """The files of folders whose names end with ``suffix``, by name, at most ``max_files``.

    Never raises: a folder that cannot be listed gives one warning (ending with ``fallback``) and
    no files; one with more files than allowed gives one warning and the first by name.
    """

    def __init__(self, suffix: str, max_files: int, what: str, fallback: str) -> None:
        self._suffix, self._max_files, self._what, self._fallback = suffix, max_files, what, fallback
        self._listings: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def paths(self, folder: str) -> tuple[str, ...]:
        try:
            info = os.stat(folder)
            stamp = (info.st_mtime_ns, info.st_ino, info.st_dev)
            before = self._listings.get(folder)
            if before is not None and before[0] == stamp and settled(info.st_mtime_ns):
                return before[1]
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries if entry.name.endswith(self._suffix))
        except (OSError, ValueError) as exc:
            self._warn(folder, f"cannot list {self._what} {folder} ({clip(str(exc))}); {self._fallback}")
            return ()
        if len(names) > self._max_files:
            self._warn(folder, f"{self._what} {folder} holds {len(names):,} *{self._suffix} files; "
                       f"reading the first {self._max_files} by name")  # fmt: skip
        paths = tuple(os.path.join(folder, name) for name in names[: self._max_files])
        with self._lock:
            if len(self._listings) >= 16:  # one folder in practice; many only in a test run
                self._listings.pop(next(iter(self._listings)))
            self._listings[folder] = (stamp, paths)
        return paths

    def _warn(self, folder: str, message: str) -> None:
        with self._lock:
            if (folder, message) in self._warned:
                return
            self._warned.add((folder, message))
        logger.warning("CoreVital: %s.", message)

    def clear(self) -> None:
        with self._lock:
            self._listings.clear()
            self._warned.clear()
