"""Writing an output file as a user expects: complete or not at all, and into what its name points at.

* A regular file (or a new name) is written beside its target under a temporary name and renamed
  over it on success: a failure or Ctrl-C leaves no partial file and an existing one untouched.
* A symlink is followed: its target is replaced, the link stays.
* A name that is not a regular file (a device such as /dev/null, a FIFO, /dev/stdout, a process
  substitution) is written through, in place: never replaced by a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import InputError


def output_target(path: str | Path) -> tuple[Path, bool]:
    """(the path to write, whether to write through in place). A folder is refused."""
    p = Path(path)
    try:
        st = p.stat()  # follows links, the /proc/self/fd magic ones too
    except FileNotFoundError:
        return Path(os.path.realpath(p)), False  # a new name, or a link to one
    except OSError as e:
        raise InputError(f"{p}: cannot write here ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a folder, expected a file name")
    if not stat.S_ISREG(st.st_mode):
        return p, True
    return Path(os.path.realpath(p)), False


def check_output(path: str | Path) -> None:
    """Refuse, before any work, an output whose folder is missing or not writable, or that is a folder."""
    target, through = output_target(path)
    if through:
        return
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"{folder}: folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: folder is not writable")


@contextlib.contextmanager
def replace_atomically(path: str | Path, follow_links: bool = True) -> Iterator[tuple[Path, bool]]:
    """Yields (the path to write now, whether it is the target itself). For a regular target, a
    temporary file beside it, renamed over the target when the block ends without an exception and
    removed otherwise; for a special file, the name itself (written through). ``follow_links=False``:
    the name itself is always replaced, a link included (a folder a job owns: nothing is written
    through it to elsewhere)."""
    target, through = output_target(path) if follow_links else (Path(os.path.abspath(path)), False)
    if through:
        yield target, True
        return
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"{target}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=folder)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # the user's choice of place
            raise InputError(f"{target}: cannot write here ({e.strerror})") from None
        raise OSError(e.errno, e.strerror, str(target)) from None  # a full disk, I/O: a runtime failure
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp, False
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError inside (a full disk, an I/O error) comes out naming ``path``, the user's name for
    the file (not a temporary one), with the system's words for it."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


@contextlib.contextmanager
def atomic_file(path: str | Path, follow_links: bool = True) -> Iterator:
    """A binary file open for writing at ``path`` by replace_atomically's rules; errors name ``path``."""
    with naming(path), replace_atomically(path, follow_links) as (where, _), open(where, "wb") as f:
        yield f
