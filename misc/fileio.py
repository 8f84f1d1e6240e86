"""The one way results are written and read back.

Every writer goes through `atomic_path`: the data goes to a temporary file in the target
folder, flushed to disk (fsync) and renamed over the target only when complete, and the folder
is synced after the rename. An interrupted run, or a power loss, therefore leaves either the old
file or the new one, never a truncated file, and a rerun can trust every file it finds.

Dict-in-.npy files (stage maps, the reference's cls_labels.npy) are pickles; `load_npy_object`
reads them with an unpickler that builds numpy arrays and plain values only, so a crafted file
cannot run code.
"""
from __future__ import annotations

import builtins
import codecs
import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misc.errors import DISK_ERRORS, UserError, brief, disk_error

# mkstemp creates files readable by the owner only; results get the permissions of a plain open()
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

# The VOC palette's first entries: 0 background black, 1 building dark red, 255 ignore white.
_PALETTE = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [255, 255, 255]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except OSError as err:
        if err.errno in DISK_ERRORS:  # one line naming the file, never a half-written one left behind
            err.filename = str(path)
            raise disk_error(err) from None
        raise
    except RuntimeError as err:
        if "write failed" not in str(err):
            raise
        # torch.save reports a failed write (a full disk) as a RuntimeError of its zip writer
        raise UserError(f"writing {path} failed ({brief(err)}); is the disk full? free some space and rerun") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk; folders cannot be opened on Windows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def check_writable_folder(folder: str | os.PathLike, flag: str) -> None:
    """Create `folder` if needed and write a probe file in it; a file in the way, a read-only folder or
    any other refusal is one UserError line naming `flag`."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise UserError(f"{flag} {folder}: {part} is a file, not a folder; choose another path or move the file")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-probe."):
            pass
    except OSError as err:
        raise UserError(f"{flag} {folder} is not writable ({err.strerror or brief(err)}); choose a writable folder "
                        f"or fix its permissions") from None


def save_npy_dict(path: str | os.PathLike, data: dict[str, np.ndarray]) -> None:
    """Write a dict of numpy arrays as `np.save(dict)`, the stage-file format (no pickled tensors)."""
    clean = {k: np.asarray(v) for k, v in data.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, clean, allow_pickle=True)


def load_npy_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a stage file written by `save_npy_dict` (or by the reference release), safely."""
    path = Path(path)
    obj = load_npy_object(path, "delete it and rerun its stage")
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a dict of arrays; delete it and rerun its stage")
    return {k: np.asarray(v) for k, v in obj.items()}


def load_npy_object(path: str | os.PathLike, remedy: str) -> Any:
    """The content of a .npy file: a plain array, or the object an `np.save(obj)` pickled (a 0-d object
    array is unwrapped). The pickle is read with `SafeUnpickler`; any failure is one UserError line that
    ends with `remedy` (the fix for this kind of file)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            # object arrays (pickles) always have a latin-1 header, version 1.0 or 2.0
            dtype = readers[version](f)[2] if version in readers else None
            if dtype is None or not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            obj = SafeUnpickler(f).load()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run the stage that writes it first") from None
    except UnsafePickle as err:
        raise UserError(f"{path} holds a pickled {err} (only numpy arrays and plain values are read); "
                        f"refusing to load it: {remedy}") from None
    except Exception as err:  # truncated or malformed pickles raise any of a dozen types
        reason = f"{type(err).__name__}: {brief(err)}"
        raise UnreadableNpy(f"{path} is not a readable .npy file ({reason}); {remedy}", reason) from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj


class UnreadableNpy(UserError):
    """A .npy file that is truncated or not a .npy file; `reason` is the library's one-line why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsafePickle(Exception):
    """A pickle names a global outside `SafeUnpickler.ALLOWED`."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy 2 (older files name numpy.core, which numpy 2 still reads)
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    found = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = multiarray._reconstruct
        found[(module, "scalar")] = multiarray.scalar
    found[("numpy", "ndarray")], found[("numpy", "dtype")] = np.ndarray, np.dtype
    return found


class SafeUnpickler(pickle.Unpickler):
    """Builds what `np.save` pickles for dicts of arrays: arrays, dtypes, numpy scalars, dict, list, tuple,
    str, bytes and numbers. Any other global (os.system, eval, a class) raises `UnsafePickle`."""

    ALLOWED: dict[tuple[str, str], Any] = {
        **_numpy_globals(),
        **{("builtins", name): getattr(builtins, name)
           for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool", "complex")},
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles (older numpy) spell an array's bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "numpy.dtypes" and name.endswith("DType") and hasattr(np.dtypes, name):  # numpy 2's dtype classes
            return getattr(np.dtypes, name)
        raise UnsafePickle(f"{module}.{name}")


def save_png(path: str | os.PathLike, array: np.ndarray, palette: bool = False) -> None:
    """Write a uint8 HxW (or HxWx3) array as PNG; `palette=True` gives a P-mode image for viewing labels."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"save_png expects uint8, got {array.dtype}")
    img = Image.fromarray(array)
    if palette:
        img = img.convert("P") if array.ndim == 3 else Image.frombytes("P", img.size, array.tobytes())
        img.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save` through a temporary file (checkpoints, deploy files)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_state_dict(path: str | os.PathLike, expected: str) -> dict:
    """A checkpoint's tensors: torch.load on the CPU with weights_only, a 'state_dict' or 'model' wrapper
    unwrapped and a DataParallel 'module.' prefix stripped. `expected` names the right file for the
    one-line UserError (e.g. "an official RepVGG -train.pth checkpoint")."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; expected {expected} (see weights/README.md)") from None
    except Exception as err:  # pickle, zip and weights_only errors all mean "not a usable checkpoint"
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {load_error_reason(err)}); "
                        f"expected {expected} (see weights/README.md)") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(wrapper), dict):
            ckpt = ckpt[wrapper]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise UserError(f"{path} does not hold a state dict of tensors (got {type(ckpt).__name__}); expected {expected}")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def load_error_reason(err: Exception) -> str:
    """The informative line of a torch.load error, without torch's boilerplate about weights_only (which
    also suggests weights_only=False, the very thing that would run the file's code)."""
    text = str(err).replace("WeightsUnpickler error:", "\n")
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(boilerplate)]
    reason = lines[0] if lines else type(err).__name__
    if reason.startswith("Trying to load unsupported GLOBAL"):
        reason = f"it names {reason.split('GLOBAL', 1)[1].split()[0]}, which is not a tensor or a plain value"
    return reason[:120]


def read_json_object(path: str | os.PathLike) -> dict | None:
    """The JSON object in `path`, or None when the file is missing, unreadable, not JSON or not an object
    (for files that may be absent or half-written by another process: a lock holder, a stage's metrics)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_lines(path: str | os.PathLike, lines: list[str]) -> None:
    save_text(path, "".join(f"{line}\n" for line in lines))


def save_npz(path: Path, arrays: dict[str, np.ndarray], only_if_changed: bool = False) -> None:
    """Atomic np.savez. `only_if_changed` keeps an identical file untouched, so its fingerprint (mtime)
    still matches and --resume reuses the outputs made from it."""
    if only_if_changed and path.is_file():
        try:
            with np.load(path) as old:
                if set(old.files) == set(arrays) and all(np.array_equal(old[k], v) for k, v in arrays.items()):
                    return
        except (OSError, ValueError):
            pass
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
