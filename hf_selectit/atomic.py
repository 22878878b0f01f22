"""All-or-nothing writes: every output is built under a temporary name beside its target and
renamed into place only when complete, so a failure (full disk, Ctrl-C, a kill) leaves the previous
content or nothing, never a partial file or folder.

The temporary names carry the writer's pid (``.NAME.selectit-new-<pid>``, and
``.NAME.selectit-old-<pid>`` for a folder moved aside during a swap), so :func:`recover` can tell a
dead writer's leftovers from a live one's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Union

from .errors import OutputWriteError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def temp_name(target: Path, kind: str) -> Path:
    """``.NAME.selectit-<kind>-<pid>`` beside ``target`` (kind: ``new`` or ``old``)."""
    return target.with_name(f".{target.name}.selectit-{kind}-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def recover(target: PathLike) -> None:
    """Clean up after writers of ``target`` that died mid-write (on this host): a folder a dead
    writer moved aside goes back to ``target`` when ``target`` is missing (the kill came between
    the two renames of a swap); otherwise it, and any half-built new one, is removed. Leftovers of
    live processes are not touched."""
    target = Path(os.path.expanduser(os.fspath(target)))
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.selectit-(new|old)-(\d+)")
    leftovers = [(match.group(1), entry) for entry in target.parent.iterdir()
                 if (match := pattern.fullmatch(entry.name))
                 and int(match.group(2)) != os.getpid() and not pid_alive(int(match.group(2)))]
    for kind, entry in sorted(leftovers, key=lambda item: item[0] != "old"):
        if kind == "old" and not os.path.lexists(target):
            os.replace(entry, target)
            logger.warning("Restored %s from %s, left there by a write that was killed before it "
                           "finished.", target, entry.name)
        else:
            _remove(entry)
            logger.info("Removed %s, left by a write that was killed before it finished.", entry)


def swap_into_place(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``: one rename for a file; a folder moves the old one aside first
    (a folder cannot be renamed over a non-empty one), then removes it. If the second rename fails
    the old folder goes back (OSError, ``target`` as it was); a kill between the two is undone by
    :func:`recover`."""
    if not (new.is_dir() and target.is_dir()):
        os.replace(new, target)
        return
    old = temp_name(target, "old")
    _remove(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the cause of an OSError in words."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


@contextlib.contextmanager
def replacing(target: PathLike, *, what: str = "") -> Iterator[Path]:
    """Write ``target`` all-or-nothing: yields a temporary path beside it (not yet existing) to
    write a file or folder to; when the block ends without an error it is renamed onto ``target``.
    ``what`` names the content in the error message ("the scored dataset").

    Raises:
        OutputWriteError: writing or renaming failed with an OSError (full disk, read-only
            folder, ...); the temporary is removed and ``target`` is as it was.
    """
    target = Path(os.path.expanduser(os.fspath(target)))
    new = temp_name(target, "new")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        recover(target)
        _remove(new)
        yield new
        swap_into_place(new, target)
    except BaseException as exc:
        _remove(new)
        # A nested write's OutputWriteError already says what and where.
        if not isinstance(exc, OSError) or isinstance(exc, OutputWriteError):
            raise
        state = ("the previous content is unchanged" if os.path.lexists(target)
                 else "nothing was written there")
        label = f"{what} " if what else ""
        raise OutputWriteError(
            f"Could not write {label}{target}: {describe_os_error(exc)}; {state}.") from exc


def write_text(path: PathLike, text: str) -> None:
    """Write a text file (UTF-8) all-or-nothing (:func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
