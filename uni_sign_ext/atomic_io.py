"""Writes that either complete or leave the previous file untouched: temp file in the same folder,
fsync, rename. A full disk or a crash mid-save never truncates a checkpoint or a cache.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

SPACE_MARGIN = 1.1  # headroom over the serialised size when checking free space


class DiskWriteError(OSError):
    """A save that could not be done; the message names the file, why, and that the old one is intact."""


def tensor_bytes(obj):
    """Bytes of the tensors inside nested dicts/lists: what torch.save will write, give or take headers."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def atomic_write(path, write, size):
    """Call write(binary file) on a temp file beside `path`, fsync, rename; room for `size` bytes is
    checked first. Any failure raises DiskWriteError and leaves a previous `path` untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
    except OSError as exc:
        raise DiskWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    if free < size * SPACE_MARGIN:
        raise DiskWriteError(f"cannot write {path}: about {size / 2**20:.1f} MiB needed, "
                             f"{free / 2**20:.1f} MiB free on its disk; free space or change the folder "
                             f"(any previous {path.name} is intact)")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        raise DiskWriteError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc} (any previous "
                             f"{path.name} is intact)") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_torch_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f), tensor_bytes(obj))


def check_writable_dir(folder, flag):
    """Create `folder` if needed and prove a file can be written there; else one line naming the flag."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DiskWriteError(f"{flag} {folder}: not a writable folder ({exc.strerror or exc}); "
                             f"pass a folder you can write to") from None


@contextmanager
def file_lock(path):
    """An exclusive advisory lock on `path` (created if needed), for read-merge-write cycles."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
