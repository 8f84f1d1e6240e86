"""Training augmentation recipes (`--augment`) and the dihedral group D4 on images and label masks.

Overhead tiles have no "up": a roof seen rotated by 90 degrees or mirrored is still a roof, so the eight
symmetries of the square (identity, three rotations, two flips, two transposes) are all valid views of a
tile, where the reference only flips left-right. The recipes:

- `reference`: the reference's random rescale + horizontal flip + crop;
- `dihedral`: one of the eight D4 elements + crop, no rescale (the plain recipe: flips and rotations only);
- `dihedral_rescale`: the reference's random rescale, then a D4 element instead of the flip, then the crop.

Every transform is a pure function of its arguments; the datasets (voc12.dataloader) draw the element from
their per-(seed, epoch, index) generator, so a resumed run sees the same views. Reads and writes nothing.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

REFERENCE, DIHEDRAL, DIHEDRAL_RESCALE = "reference", "dihedral", "dihedral_rescale"
RECIPES = (REFERENCE, DIHEDRAL, DIHEDRAL_RESCALE)

# the views a prediction averages over (S7 --amn_views, S11 --seg_views; `mean_over_views`): each image and its
# mirror (the reference), or all eight D4 elements (for a network trained on them)
TEST_VIEWS = ("flip", DIHEDRAL)

# the eight elements of D4, as what they do to an HxW(xC) array (rows run down, columns right)
D4 = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "antitranspose")


def dihedral(array: np.ndarray, element: int) -> np.ndarray:
    """`array` (HxW or HxWxC) under D4 element `element` (0-7, named in D4); a view, no copy.

    rot90 turns the picture a quarter counter-clockwise (np.rot90), hflip mirrors left-right, vflip
    top-bottom, transpose swaps rows and columns (mirror in the main diagonal), antitranspose mirrors in the
    other diagonal. Elements 1, 3, 6 and 7 swap H and W.
    """
    if element == 0:
        return array
    if 1 <= element <= 3:
        return np.rot90(array, element, axes=(0, 1))
    if element == 4:
        return array[:, ::-1]
    if element == 5:
        return array[::-1]
    if element == 6:
        return np.swapaxes(array, 0, 1)
    if element == 7:
        return np.swapaxes(array, 0, 1)[::-1, ::-1]
    raise ValueError(f"D4 has 8 elements (0-7), got {element}")


def random_dihedral(arrays: Sequence[np.ndarray], rng: random.Random) -> list[np.ndarray]:
    """The same random D4 element (one draw of `rng`, uniform over the eight) applied to every array, so an
    image and its label mask stay aligned pixel for pixel."""
    element = rng.randrange(len(D4))
    return [dihedral(a, element) for a in arrays]


def rescales(recipe: str) -> bool:
    """Whether `recipe` includes the reference's random rescale."""
    return recipe != DIHEDRAL


def fingerprint_entry(recipe: str) -> dict[str, str]:
    """What a training fingerprint records of `recipe`: nothing for the reference recipe, so checkpoints
    finished before --augment existed (all made with it) are kept rather than retrained; the name otherwise."""
    return {} if recipe == REFERENCE else {"augment": recipe}


def mean_over_views(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, views: str) -> torch.Tensor:
    """The test-time mean of `predict` over the views of x [N, ..., H, W] that `views` (TEST_VIEWS) names, each
    prediction turned back to x's frame: x and its mirror for "flip"; those two at each of the four 90-degree
    turns (the eight D4 elements) for "dihedral". `predict` maps a batch [M, ..., H, W] to maps [M, ..., h, w]
    (any grid, spatial axes last); each view and its mirror go through it as one batch."""
    if views not in TEST_VIEWS:
        raise ValueError(f"views must be one of {TEST_VIEWS}, not {views!r}")
    turns = 4 if views == DIHEDRAL else 1
    total = None
    for k in range(turns):
        turned = torch.rot90(x, k, (-2, -1))
        out = predict(torch.cat([turned, turned.flip(-1)]))
        both = torch.rot90(out[: len(x)] + out[len(x):].flip(-1), -k, (-2, -1))
        total = both if total is None else total + both
    return total / (2 * turns)
