"""S11: DeepLabV3+ shapes and weights, sliding-window prediction, GeoTIFF output, and the
train_seg -> make_seg -> eval_seg stages on the tiny dataset (with resume)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from misc import fileio, imutils
from misc.errors import UserError
from step.report import stage_table
from net import backbones, deeplabv3plus
from net.backbones import reparameterize
from net.checkpoints import build_net, save_net
from net.deeplabv3plus import DeepLabV3Plus
from net.resnet import ResNet50
from step import eval_seg, make_seg, train_seg
from step.kit import segmentation, stages
from tests.conftest import stage_args


pytestmark = pytest.mark.usefixtures("cpu_runtime", "one_thread")


def seg_args(root, work, *extra):
    return stage_args(root, work, "--seg_weights_name", str(work / "sess" / "seg"), "--seg_batch_size", "4",
                      "--seg_num_epoches", "2", "--seg_crop_size", "64", "--seg_window", "64", "--num_vis", "1", *extra)


def randomise_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)


def test_repvgg_deeplab_any_input_size_and_deploy_equivalence():
    model = DeepLabV3Plus("RepVGG-Tiny").train()
    assert model(torch.randn(2, 3, 67, 91)).shape == (2, 2, 67, 91)
    model.eval()
    randomise_bn(model)
    x = torch.randn(1, 3, 67, 91)
    with torch.no_grad():
        expected = model(x)
        assert [f.shape[-2:] for f in model.encoder.forward_features(x)] == [(17, 23), (9, 12), (5, 6), (5, 6)]
        torch.testing.assert_close(reparameterize(model)(x), expected, atol=1e-4, rtol=1e-4)
    assert all(p.requires_grad for n, p in model.named_parameters() if "linear" not in n)


def test_resnet50_deeplab_odd_input_and_os16():
    model = DeepLabV3Plus("resnet50").eval()
    x = torch.randn(1, 3, 33, 45)
    with torch.no_grad():
        features = model.encoder.forward_features(x)
        assert model(x).shape == (1, 2, 33, 45)
    assert [tuple(f.shape[1:]) for f in features] == [(256, 9, 12), (512, 5, 6), (1024, 3, 3), (2048, 3, 3)]
    assert model.encoder.layer4[0].conv2.dilation == (1, 1) and model.encoder.layer4[1].conv2.dilation == (2, 2)


def test_resnet50_loads_torchvision_state_dict(tmp_path):
    source = ResNet50()
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # torchvision's files have no num_batches_tracked
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    assert len(state) == 267  # torchvision resnet50: 320 keys, 53 of them num_batches_tracked
    for key, shape in {"conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,),
                       "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.0.downsample.1.bias": (256,),
                       "layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.2.bn3.running_var": (2048,),
                       "fc.weight": (1000, 2048)}.items():
        assert tuple(state[key].shape) == shape, key
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(state, path)
    model = build_net(DeepLabV3Plus, "resnet50", str(path))
    loaded = model.encoder.state_dict()
    for key in ("conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var"):
        torch.testing.assert_close(loaded[key], state[key])
    torch.save({"module." + k: v for k, v in state.items() if not k.startswith("fc.")}, path)  # DataParallel, no fc
    backbones.load_imagenet(ResNet50(), "resnet50", str(path))
    del state["layer4.2.bn3.running_var"]
    with pytest.raises(UserError, match="1 missing keys .first: layer4.2.bn3.running_var"):
        backbones.load_state(ResNet50(), "resnet50", state, "state dict")
    with pytest.raises(UserError, match="looks like a RepVGG checkpoint"):
        backbones.load_state(ResNet50(), "resnet50", DeepLabV3Plus("RepVGG-Tiny").encoder.state_dict(), "state dict")


def test_window_starts_cover_the_image_with_the_border_window_shifted_inward():
    assert deeplabv3plus.window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert deeplabv3plus.window_starts(96, 32, 32) == [0, 32, 64]
    assert deeplabv3plus.window_starts(20, 32, 24) == [0]


def test_sliding_window_equals_whole_image_when_one_window_covers_it():
    model = DeepLabV3Plus("RepVGG-Tiny").eval()
    image = np.random.default_rng(0).integers(0, 255, (41, 53, 3), dtype=np.uint8)
    whole = deeplabv3plus.view_logits(model, torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(image)))[None])[0]
    torch.testing.assert_close(deeplabv3plus.predict(model, image, window=64), whole, atol=1e-5, rtol=1e-5)
    tiled = deeplabv3plus.predict(model, image, window=32, overlap=0.5, scales=(1.0, 0.75), batch=3)
    assert tiled.shape == (2, 41, 53) and torch.isfinite(tiled).all()


def test_dihedral_views_average_the_eight_turned_predictions():
    # a convolution with random weights sees each rotation of an image differently; the dihedral average
    # is the mean of the eight predictions turned back, the same for a rotated image (turned back), and
    # keeps a non-square input's shape
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 3, padding=1).eval()
    x = torch.randn(2, 3, 12, 17)
    by_hand = []
    for k in range(4):
        for mirror in (False, True):
            view = torch.rot90(x, k, (-2, -1))
            view = view.flip(-1) if mirror else view
            out = model(view)
            out = out.flip(-1) if mirror else out
            by_hand.append(torch.rot90(out, -k, (-2, -1)))
    dihedral = deeplabv3plus.view_logits(model, x, views="dihedral")
    assert dihedral.shape == (2, 2, 12, 17)
    torch.testing.assert_close(dihedral, torch.stack(by_hand).mean(0), atol=1e-5, rtol=1e-5)
    turned = deeplabv3plus.view_logits(model, torch.rot90(x, 1, (-2, -1)), views="dihedral")
    torch.testing.assert_close(torch.rot90(turned, -1, (-2, -1)), dihedral, atol=1e-5, rtol=1e-5)
    flip = deeplabv3plus.view_logits(model, x)
    torch.testing.assert_close(flip, (model(x) + model(x.flip(-1)).flip(-1)) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(flip, dihedral, atol=1e-3)


def test_geotiff_in_gives_geotiff_out_with_same_transform_and_crs(tmp_path):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    transform, crs = from_origin(500_000.0, 4_600_000.0, 0.5, 0.5), CRS.from_epsg(32633)
    pixels = np.random.default_rng(1).integers(0, 255, (3, 45, 70), dtype=np.uint8)
    with rasterio.open(scenes / "scene.tif", "w", driver="GTiff", height=45, width=70, count=3, dtype="uint8",
                       crs=crs, transform=transform) as dst:
        dst.write(pixels)
    fileio.save_png(scenes / "plain.png", pixels.transpose(1, 2, 0).copy())
    args = seg_args(tmp_path / "unused_root", tmp_path, "--seg_infer_dir", str(scenes), "--seg_window", "32")
    save_net(DeepLabV3Plus("RepVGG-Tiny"), tmp_path / "sess" / "seg.pth")
    make_seg.run(args)
    out = tmp_path / "result" / "seg"
    with rasterio.open(out / "scene.tif") as src:
        assert (src.count, src.dtypes[0], src.shape) == (1, "uint8", (45, 70))
        assert src.crs == crs and src.transform == transform
        assert set(np.unique(src.read(1))) <= {0, 1}
    np.testing.assert_array_equal(imutils.read_mask(out / "scene.png"), rasterio.open(out / "scene.tif").read(1))
    assert (out / "plain.png").is_file() and not (out / "plain.tif").exists()


def write_pseudo_masks(root, out_dir):
    """Pseudo masks for the test: the ground truth of the training tiles as {0,1}."""
    for name in (root / "train_aug.txt").read_text().split():
        gt = imutils.gt_to_binary(imutils.read_mask(root / "SegmentationClassAug" / f"{name}.png"))
        fileio.save_png(out_dir / f"{name}.png", gt)


def test_s11_train_make_eval_and_resume(tiny_root, tmp_path, monkeypatch):
    args = seg_args(tiny_root, tmp_path)
    write_pseudo_masks(tiny_root, tmp_path / "result" / "pseudo_mask")
    train_seg.run(args)
    ckpt_path = tmp_path / "sess" / "seg.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["network"] == "DeepLabV3Plus" and ckpt["backbone"] == "RepVGG-Tiny" and ckpt["trained_on"] == "pseudo masks"
    assert not (tmp_path / "sess" / "seg.resume.pth").exists()

    make_seg.run(args)
    test_names = (tiny_root / "test.txt").read_text().split()
    for name in test_names:
        mask = imutils.read_mask(tmp_path / "result" / "seg" / f"{name}.png")
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 1}
    assert len(list((tmp_path / "result" / "vis" / "seg").glob("*.png"))) == 1

    eval_seg.run(args)
    result = json.loads((tmp_path / "result" / "metrics_seg.json").read_text())
    assert result["tiles"] == len(test_names) and result["tiles_without_building"] >= 1  # the negative counts too
    assert result["stage"] == "DeepLabV3+ on pseudo masks (S11)" and 0 <= result["scores"]["building_iou"] <= 1
    assert "DeepLabV3+ on pseudo masks (S11)" in stage_table(tmp_path / "result")

    # resume: a finished training and finished masks are skipped
    stamps = {p: p.stat().st_mtime_ns for p in [ckpt_path, *(tmp_path / "result" / "seg").glob("*.png")]}
    from misc import trainloop

    monkeypatch.setattr(trainloop, "fit", lambda *a, **k: pytest.fail("a finished training was rerun"))
    monkeypatch.setattr(deeplabv3plus, "predict", lambda *a, **k: pytest.fail("a finished mask was redone"))
    train_seg.run(args)
    make_seg.run(args)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_rejected_tiles_are_left_out_of_pseudo_mask_training_and_change_its_fingerprint(tiny_root, tmp_path):
    from misc import tilecsv
    from step.kit.stamps import training_data

    args = seg_args(tiny_root, tmp_path)
    assert args.review_file == str(tmp_path / "result" / "review.csv")  # absent: nothing rejected
    write_pseudo_masks(tiny_root, tmp_path / "result" / "pseudo_mask")
    s = segmentation.seg_settings(args)
    before = train_seg.training_set(args, s)
    first, second = before.names[:2]
    tilecsv.write_review(args.review_file, {first: "reject", second: "accept"})
    after = train_seg.training_set(args, s)
    assert after.names == [n for n in before.names if n != first]
    assert training_data(after.names, after.image_paths) != training_data(before.names, before.image_paths)
    gt_args = seg_args(tiny_root, tmp_path, "--seg_label_dir", str(tiny_root / "SegmentationClassAug"))
    assert first in train_seg.training_set(gt_args, segmentation.seg_settings(gt_args)).names  # reviews judge pseudo masks


def test_ground_truth_training_labels_and_stage_name(tiny_root, tmp_path):
    args = seg_args(tiny_root, tmp_path, "--seg_label_dir", str(tiny_root / "SegmentationClassAug"),
                    "--seg_num_epoches", "1")
    s = segmentation.seg_settings(args)
    dataset = train_seg.training_set(args, s)
    assert set(torch.unique(dataset[0]["label"]).tolist()) <= {0, 1, 255}
    train_seg.run(args)
    assert segmentation.trained_on(s.checkpoint, "?") == "ground truth"
    assert stages.label("make_seg", "ground truth").startswith("DeepLabV3+ on ground truth (S11")


def test_s11_defaults_are_resolved_in_run_sample_with_the_others(tiny_root, tmp_path):
    args = seg_args(tiny_root, tmp_path)
    assert args.seg_backbone == args.backbone == "RepVGG-Tiny"
    assert args.seg_weights == args.MODEL_WEIGHTS == ""  # follows --MODEL_WEIGHTS (none) for --backbone
    assert args.seg_out_dir == str(tmp_path / "result" / "seg") and args.seg_infer_list == args.test_list
    other = seg_args(tiny_root, tmp_path, "--seg_backbone", "resnet50", "--seg_out_dir", str(tmp_path / "masks"))
    assert other.seg_weights == backbones.default_weights("resnet50") and other.seg_out_dir == str(tmp_path / "masks")


def test_user_errors(tiny_root, tmp_path):
    with pytest.raises(UserError, match="pseudo_mask_out_dir"):
        train_seg.run(seg_args(tiny_root, tmp_path))
    with pytest.raises(UserError, match="valid names: .*resnet50"):
        seg_args(tiny_root, tmp_path, "--seg_backbone", "resnet18")  # refused with the other defaults
    with pytest.raises(UserError, match="--seg_batch_size 1"):
        train_seg.check_batch(1, 1)
    for flag, value in (("--seg_overlap", "1.0"), ("--seg_window", "8"), ("--seg_scales", "1,0")):
        with pytest.raises(SystemExit):  # refused by its argparse type, before any stage runs
            seg_args(tiny_root, tmp_path, flag, value)
    with pytest.raises(UserError, match="--train_seg_pass True"):
        make_seg.run(seg_args(tiny_root, tmp_path))
    with pytest.raises(UserError, match="run --make_seg_pass True"):
        eval_seg.run(seg_args(tiny_root, tmp_path))
