"""The one way results are written and read back.

Every writer goes through `atomic_path`: the data goes to a temporary file in the target
folder, which is renamed over the target only when complete. An interrupted run therefore
leaves either the old file or the new one, never a truncated file, and a rerun can trust
every file it finds.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from misc.errors import UserError, brief

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
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_npy_dict(path: str | os.PathLike, data: dict[str, np.ndarray]) -> None:
    """Write a dict of numpy arrays as `np.save(dict)`, the stage-file format (no pickled tensors)."""
    clean = {k: np.asarray(v) for k, v in data.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, clean, allow_pickle=True)


def load_npy_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a stage file written by `save_npy_dict` (or by the reference release)."""
    path = Path(path)
    try:
        obj = np.load(path, allow_pickle=True)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run the stage that writes it first") from None
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"{path} is not a readable .npy file ({brief(err)}); delete it and rerun its stage") from None
    if obj.shape != () or not isinstance(obj.item(), dict):
        raise UserError(f"{path} does not hold a dict of arrays; delete it and rerun its stage")
    return {k: np.asarray(v) for k, v in obj.item().items()}


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
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {_short_reason(err)}); "
                        f"expected {expected} (see weights/README.md)") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(wrapper), dict):
            ckpt = ckpt[wrapper]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise UserError(f"{path} does not hold a state dict of tensors (got {type(ckpt).__name__}); expected {expected}")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def _short_reason(err: Exception) -> str:
    """First informative line of a load error; weights_only errors bury it after 'WeightsUnpickler error:'."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:120]


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
