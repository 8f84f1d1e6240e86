"""S11 predicts a tile with a margin of its neighbouring XYZ tiles (mirrored where none is on disk)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from misc import fileio, geodata, imutils
from misc.errors import UserError
from misc.tilegrid import TileContext
from step.kit.segmentation import context_fingerprint, tile_logits

RNG = np.random.default_rng(0)


def grid_tiles(size: int = 16) -> dict[tuple[int, int], np.ndarray]:
    return {(dy, dx): RNG.integers(0, 256, (size, size, 3), dtype=np.uint8) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def mosaic(tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    return np.concatenate([np.concatenate([tiles[dy, dx] for dx in (-1, 0, 1)], 1) for dy in (-1, 0, 1)], 0)


def test_margin_comes_from_the_neighbours_where_given_and_is_mirrored_elsewhere():
    tiles, m = grid_tiles(), 5
    centre = tiles[0, 0]
    whole = mosaic(tiles)
    grown = imutils.with_margin(centre, {k: t for k, t in tiles.items() if k != (0, 0)}, m)
    assert np.array_equal(grown, whole[16 - m:32 + m, 16 - m:32 + m])
    alone = imutils.with_margin(centre, {}, m)
    assert np.array_equal(alone, np.pad(centre, ((m, m), (m, m), (0, 0)), mode="symmetric"))
    assert np.array_equal(alone[m:-m, m:-m], centre)
    # only the tile to the east: its strip on the right, mirror on the other sides
    east = imutils.with_margin(centre, {(0, 1): tiles[0, 1]}, m)
    assert np.array_equal(east[m:-m, -m:], tiles[0, 1][:, :m])
    assert np.array_equal(east[:, :-m][:, :m + 16], alone[:, :m + 16])
    # a neighbour of another size is not beside it: left out; margin 0 is the image
    odd = imutils.with_margin(centre, {(0, 1): tiles[0, 1][:8]}, m)
    assert np.array_equal(odd, alone)
    assert np.array_equal(imutils.with_margin(centre, tiles, 0), centre)


def write_grid(folder, tiles, x0=100, y0=200, z=18):
    for (dy, dx), tile in tiles.items():
        fileio.save_png(folder / f"OAM-{x0 + dx}-{y0 + dy}-{z}.png", tile)
    return folder / f"OAM-{x0}-{y0}-{z}.png"


def test_neighbours_are_found_by_name_and_their_files_are_in_the_fingerprint(tmp_path):
    tiles = grid_tiles()
    del tiles[1, 1]
    centre = write_grid(tmp_path, tiles)
    fileio.save_png(tmp_path / "photo.png", tiles[0, 0])
    context = TileContext.of_folders([tmp_path], 8, geodata.FAIR_XYZ_NAME)
    assert set(context.neighbours(centre)) == {k for k in tiles if k != (0, 0)}
    assert context.neighbours(tmp_path / "photo.png") == {}
    assert context.neighbours(tmp_path / "OAM-5-5-18.png") == {}
    before = context_fingerprint(context)
    fileio.save_png(tmp_path / "OAM-101-201-18.png", tiles[0, 0])  # a new south-east neighbour
    after = TileContext.of_folders([tmp_path], 8, geodata.FAIR_XYZ_NAME)
    assert (1, 1) in after.neighbours(centre) and context_fingerprint(after) != before
    assert TileContext.of_folders([tmp_path], 0, geodata.FAIR_XYZ_NAME).neighbours(centre) == {}


def test_a_tile_with_its_context_is_predicted_as_the_middle_of_the_whole_mosaic(tmp_path):
    tiles = grid_tiles()
    centre = write_grid(tmp_path, tiles)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 2, 3, padding=1)).eval()
    args = argparse.Namespace(seg_window=16, seg_overlap=0.25, seg_scales=(1.0,), seg_infer_batch=4, amp="none",
                              seg_views="flip")
    _, whole = tile_logits(model, write_whole(tmp_path, mosaic(tiles)), TileContext(0, geodata.FAIR_XYZ_NAME, {}),
                           argparse.Namespace(**{**vars(args), "seg_window": 48}), "cpu")
    expected = whole[:, 16:32, 16:32]
    with_context = tile_logits(model, centre, TileContext.of_folders([tmp_path], 4, geodata.FAIR_XYZ_NAME), args,
                               "cpu")[1]
    alone = tile_logits(model, centre, TileContext(0, geodata.FAIR_XYZ_NAME, {}), args, "cpu")[1]
    assert with_context.shape == alone.shape == (2, 16, 16)
    assert torch.allclose(with_context, expected, atol=1e-5)
    assert not torch.allclose(alone, expected, atol=1e-3)  # the edges differ without the neighbours
    assert torch.allclose(alone[:, 3:-3, 3:-3], expected[:, 3:-3, 3:-3], atol=1e-5)


def write_whole(folder, image):
    path = folder / "whole" / "mosaic.png"
    fileio.save_png(path, image)
    return path


def test_training_crops_take_listed_neighbours_and_keep_image_and_labels_aligned(tmp_path):
    from voc12 import dataloader

    size, m = 16, 8
    tiles = grid_tiles(size)
    for tile in tiles.values():  # channel 0 says building: 255 where the label is 1, 0 elsewhere
        tile[..., 0] = np.where(RNG.random((size, size)) < 0.4, 255, 0)
    centre = write_grid(tmp_path / "img", tiles)
    names = sorted(p.stem for p in (tmp_path / "img").glob("*.png"))
    listed = [n for n in names if n != "OAM-101-199-18"]  # the north-east neighbour is not in the list
    for name in names:
        image = imutils.read_image(tmp_path / "img" / f"{name}.png")
        fileio.save_png(tmp_path / "lbl" / f"{name}.png", (image[..., 0] == 255).astype(np.uint8))
    paths = {n: tmp_path / "img" / f"{n}.png" for n in listed}
    context = TileContext.of_folders([tmp_path / "img"], m, geodata.FAIR_XYZ_NAME)
    data = dataloader.SegmentationDataset(listed, paths, tmp_path / "lbl", crop_size=size, augment="dihedral",
                                          context=context)
    image, label = data.with_neighbours(centre, tiles[0, 0], (tiles[0, 0][..., 0] == 255).astype(np.uint8))
    whole = mosaic(tiles)
    expected = whole[size - m:2 * size + m, size - m:2 * size + m]
    assert np.array_equal(image[:, :-m], expected[:, :-m])              # west, middle: from the neighbours
    assert np.array_equal(image[m:, -m:], expected[m:, -m:])            # east and south-east too
    mirrored = imutils.with_margin(tiles[0, 0], {}, m)
    assert np.array_equal(image[:m, -m:], mirrored[:m, -m:])           # north-east is not listed: mirrored
    assert np.array_equal(label, (image[..., 0] == 255).astype(np.uint8))
    seen_offsets = set()
    for epoch in range(3):
        data.set_epoch(epoch)
        for index in range(len(listed)):
            sample = data[index]
            img, lbl = sample["img"].numpy(), sample["label"].numpy()
            assert img.shape == (3, size, size) and lbl.shape == (size, size)
            assert np.array_equal(img[0] > 0, lbl == 1)                  # aligned after crop and D4
        seen_offsets.add(hash(data[listed.index(centre.stem)]["img"].numpy().tobytes()))
    assert len(seen_offsets) > 1  # the crop moves from epoch to epoch


def test_the_training_context_enters_the_fingerprint_only_when_used(tmp_path):
    from step import train_seg
    from voc12 import dataloader

    used = dataloader.SegmentationDataset([], {}, tmp_path, context=TileContext(8, geodata.FAIR_XYZ_NAME, {}))
    assert train_seg.context_entry(used) == {"seg_train_context": 8}
    assert train_seg.context_entry(dataloader.SegmentationDataset([], {}, tmp_path)) == {}  # old models stay valid


def test_the_epoch_curve_scores_the_listed_tiles_after_every_epoch(tiny_root, tmp_path):
    import json

    from step import train_seg
    from tests.test_seg import seg_args, write_pseudo_masks

    args = seg_args(tiny_root, tmp_path, "--seg_curve_lists", str(tiny_root / "test.txt"))
    write_pseudo_masks(tiny_root, tmp_path / "result" / "pseudo_mask")
    train_seg.run(args)
    curve = json.loads((tmp_path / "result" / "metrics_seg_curve.json").read_text())
    assert [row["epoch"] for row in curve["curve"]] == [1, 2]
    assert all(0 <= row["building_iou"]["test"] <= 1 for row in curve["curve"])
    # two lists of one file name would share a key of the curve: refused in one line before any training
    twice = seg_args(tiny_root, tmp_path, "--seg_curve_lists", f"{tiny_root / 'test.txt'},{tiny_root / 'test.txt'}")
    with pytest.raises(UserError, match="two lists called 'test'"):
        train_seg.EpochCurve(twice)
