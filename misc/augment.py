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
from collections.abc import Sequence

import numpy as np

REFERENCE, DIHEDRAL, DIHEDRAL_RESCALE = "reference", "dihedral", "dihedral_rescale"
RECIPES = (REFERENCE, DIHEDRAL, DIHEDRAL_RESCALE)

# the views a prediction averages over (--seg_views, net.deeplabv3plus.view_logits): each image and its mirror
# (the reference), or all eight D4 elements (for a model trained on them)
TEST_VIEWS = ("flip", "dihedral")

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
