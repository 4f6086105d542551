"""Replacing a folder as a unit: written beside it, swapped in, leftovers cleaned.

A shard set is written to a temporary folder next to its target and then put in
place. Two renames (target away, new in) leave a moment with no target; a
crash there lost the set (it survived only under ``.NAME.old-*``). On Linux
the two folders are exchanged in one step instead (``renameat2`` with
``RENAME_EXCHANGE``), so the target is always a complete set, old or new.
Elsewhere the two renames remain, and the next writer puts a stranded old set
back. Temporary folders carry their writer's host and pid, so the next writer
removes those whose writer died (SIGKILL leaves them), and only those.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import sys
import uuid
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def writer_tag() -> str:
    """``HOST-PID-HEX``: a new name part for a temporary folder of this process, which
    :func:`writer_dead` reads back."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _sibling(target: Path, kind: str) -> Path:
    """The name ``.NAME.KIND-HOST-PID-HEX`` next to ``target`` (kind: tmp or old)."""
    return target.parent / f".{target.name}.{kind}-{writer_tag()}"


def temp_sibling(target: Path) -> Path:
    """A new, empty temporary folder next to ``target`` to write its replacement in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = _sibling(target, "tmp")
    folder.mkdir()
    return folder


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically; False where this system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` at ``target``, replacing what is there."""
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # it now holds the old set
        return
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def writer_dead(folder: Path, prefix: str) -> bool:
    """Whether the writer named in ``folder``'s name (``PREFIX`` + :func:`writer_tag`) is
    gone: a pid of this host that no longer runs, or a name from before writers were
    named. Other hosts' are alive."""
    parts = folder.name[len(prefix) :].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True
    host, pid, _ = parts
    if host != socket.gethostname():
        return False  # another machine's writer (shared storage): not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_leftovers(target: Path) -> list[str]:
    """Tidy what dead writers left next to ``target``; returns a line per action.

    A stranded old set (a crash between the two renames, ``target`` missing) is put
    back; temporary and old folders of dead writers are removed.
    """
    said = []
    if not target.parent.is_dir():
        return said
    olds = sorted(target.parent.glob(f".{target.name}.old-*"))
    if not target.exists() and olds:
        os.rename(olds[-1], target)
        said.append(f"{target}: put back the complete set a crash left at {olds[-1].name}")
        olds = olds[:-1]
    for kind, found in (("tmp", target.parent.glob(f".{target.name}.tmp-*")), ("old", olds)):
        for folder in found:
            if folder.is_dir() and writer_dead(folder, f".{target.name}.{kind}-"):
                shutil.rmtree(folder, ignore_errors=True)
                said.append(f"{target}: removed {folder.name}, left by a writer that died")
    return said
