"""PCL and MCL against hand computations (S6)."""
from __future__ import annotations

import math

import torch

from misc.losses import balanced_cross_entropy, multiscale_jsd, refinement_loss


def test_pcl_by_hand():
    # two pixels: one background (label 0), one building (label 1); logits give p = (0.5, 0.5) and (e/(1+e), 1/(1+e))
    logits = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]]])  # [1, 2, 1, 2]
    labels = torch.tensor([[[0, 1]]])
    eps = 0.15
    p1 = [0.5, 0.5]
    p2 = [math.e / (1 + math.e), 1 / (1 + math.e)]
    l_bg = -((1 - eps) * math.log(p1[0]) + eps * math.log(p1[1]))
    l_fg = -(eps * math.log(p2[0]) + (1 - eps) * math.log(p2[1]))
    assert balanced_cross_entropy(logits, labels, eps).item() == __import__("pytest").approx((l_bg + l_fg) / 2, rel=1e-6)


def test_pcl_class_balance_and_ignore():
    logits = torch.randn(2, 2, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, :2] = 1
    labels[1, 0, 0] = 255
    out = balanced_cross_entropy(logits, labels, 0.15)
    lp = torch.log_softmax(logits, 1)
    per = -(0.85 * lp.gather(1, labels.clamp(max=1)[:, None])[:, 0] + 0.15 * lp.gather(1, 1 - labels.clamp(max=1)[:, None])[:, 0])
    expected = (per[(labels == 0)].mean() + per[labels == 1].mean()) / 2
    torch.testing.assert_close(out, expected)


def test_pcl_absent_class_is_finite_and_has_gradient():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    only_bg = torch.zeros(1, 3, 3, dtype=torch.long)
    out = balanced_cross_entropy(logits, only_bg, 0.15)
    assert torch.isfinite(out)
    out.backward()
    assert logits.grad.abs().sum() > 0
    nothing = torch.full((1, 3, 3), 255, dtype=torch.long)
    assert balanced_cross_entropy(logits, nothing, 0.15).item() == 0.0


def test_mcl_zero_for_identical_and_positive_otherwise():
    # unsaturated probabilities: the mixture is clamped to [1e-3, 1 - 1e-3] as in the reference
    p = torch.softmax(torch.randn(2, 2, 4, 4), 1).clamp(0.01, 0.99)
    p = p / p.sum(1, keepdim=True)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    assert multiscale_jsd([p, p, p], labels, threshold=0.0).abs().item() < 1e-6
    q = torch.softmax(torch.randn(2, 2, 4, 4) * 3, 1)
    assert multiscale_jsd([p, q, p], labels, threshold=0.0).item() > 1e-3


def test_mcl_per_image_gate():
    flat = torch.full((1, 2, 2, 2), 0.5)  # no pixel reaches the 0.8 gate: the image is switched off
    other = torch.tensor([[[[0.6, 0.4]] * 2, [[0.4, 0.6]] * 2]])
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    assert multiscale_jsd([flat, other, flat], labels, threshold=0.8).item() == 0.0
    assert multiscale_jsd([flat, other, flat], labels, threshold=0.5).item() > 0.0


def test_pcl_at_pixels_sees_what_the_logit_grid_drops():
    # a 2 x 2 building in a 32 x 32 crop whose logit grid is 2 x 2: nearest-exact samples the block centres
    # (pixels 8 and 24), so on the grid the building is gone and PCL has no building term; on the logits
    # upsampled to the crop it is there
    class Constant(torch.nn.Module):
        def forward(self, img, label_cls):
            return torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)], dim=1)  # [1, 2, 2, 2]

    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[0, :2, :2] = 1
    batch = {"img": torch.zeros(1, 3, 32, 32), "label_cls": torch.ones(1, 1), "label": label}
    common = dict(eps=0.15, lambda1=0.0, scale_small=0.7, scale_large=1.5, threshold=0.8, pixel_gate=False)
    on_grid = refinement_loss(Constant(), batch, pcl_at="logits", **common)
    on_pixels = refinement_loss(Constant(), batch, pcl_at="pixels", **common)
    lp = torch.log_softmax(torch.tensor([0.0, 1.0]), 0)
    bg_term = -(0.85 * lp[0] + 0.15 * lp[1])
    fg_term = -(0.15 * lp[0] + 0.85 * lp[1])
    torch.testing.assert_close(on_grid, bg_term)
    torch.testing.assert_close(on_pixels, (bg_term + fg_term) / 2)
