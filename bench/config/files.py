"""Reading a file a user or a results folder hands bench, without hanging and without filling memory.

A FIFO blocks a plain `open` until some writer comes, a link to /dev/zero reads forever, and a
huge file is read whole into memory: each of these can sit where a config or a record is
expected. So the file is opened without blocking, checked to be a regular file by what was
opened (not by a path check that a swap could outrun), and read at most one byte past a limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_regular_file(path: Path, limit: int, follow_links: bool = True) -> bytes:
    """The bytes of `path`; ValueError when it is not a regular file or holds more than `limit` bytes.

    `follow_links=False` refuses a link itself (OSError), for readers that have already decided
    which links they follow."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{_size(info.st_size)}, over the {_size(limit)} limit")
        data = handle.read(limit + 1)  # a file that grows meanwhile is still read only this far
    if len(data) > limit:
        raise ValueError(f"over the {_size(limit)} limit")
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"
