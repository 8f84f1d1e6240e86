"""The training losses: the classifier's image-label BCE (S1), the AR network's PCL (label-smoothed,
class-balanced cross-entropy) and MCL (multi-scale Jensen-Shannon consistency) and their sum (S6), and
DeepLabV3+'s pixel cross-entropy (S11). The `*_loss(model, batch)` functions are what misc.trainloop
calls for one batch."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from misc.imutils import IGNORE


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.15) -> torch.Tensor:
    """PCL: soft targets (1 - eps on the label, eps on the other class), per-pixel CE, averaged per
    class over the whole batch, then over the classes present.

    logits [B, 2, h, w], labels [B, h, w] in {0, 1, 255}. The reference averages both class terms and
    returns NaN when a batch lacks one class; here an absent class is left out, and a
    batch with no labelled pixel gives 0 (still connected to the graph).
    """
    num_classes = logits.shape[1]
    log_prob = F.log_softmax(logits.float(), dim=1)
    valid = labels != IGNORE
    target = torch.where(valid, labels, torch.zeros_like(labels)).long()
    soft = torch.full_like(log_prob, eps / (num_classes - 1))
    soft.scatter_(1, target[:, None], 1.0 - eps)
    per_pixel = -(soft * log_prob).sum(dim=1)  # [B, h, w]
    terms = [per_pixel[valid & (labels == c)].mean() for c in range(num_classes) if (valid & (labels == c)).any()]
    if not terms:
        return logits.sum() * 0.0
    return torch.stack(terms).mean()


def multiscale_jsd(probs: list[torch.Tensor], labels: torch.Tensor, threshold: float = 0.8,
                   per_pixel_gate: bool = False) -> torch.Tensor:
    """MCL: sum over the predictions k of KL(p_k || M), M = clamp(mean_k p_k, 1e-3, 1 - 1e-3),
    averaged over B*h*w, gated by confidence.

    probs: softmax maps [B, C, h, w] at the same size (original, downscaled, upscaled input).
    Gate (the reference's): per image, 1 if max over (C, labelled pixels) of M >= threshold, so almost always 1.
    `per_pixel_gate=True` gates each labelled pixel by max_c M(x) >= threshold instead (an ablation).
    """
    mixture = torch.stack(probs).mean(dim=0).clamp(1e-3, 1 - 1e-3)
    valid = (labels != IGNORE)[:, None].to(mixture.dtype)  # [B, 1, h, w]
    if per_pixel_gate:
        gate = ((mixture.amax(dim=1, keepdim=True) >= threshold).to(mixture.dtype) * valid)
    else:
        peak = (mixture * valid).flatten(1).amax(dim=1)
        gate = (peak >= threshold).to(mixture.dtype)[:, None, None, None]
    log_m = mixture.log()
    kl = sum((p * (p.clamp_min(1e-12).log() - log_m)).sum(dim=1, keepdim=True) for p in probs)
    return (kl * gate).sum() / (labels.shape[0] * labels.shape[1] * labels.shape[2])


def classification_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """ICL: mean BCE-with-logits of the building logit against the image label."""
    logits = model(batch["img"])
    return F.binary_cross_entropy_with_logits(logits.float(), batch["label"])





def segmentation_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels (255 ignored); 0 for a batch without any."""
    logits = model(batch["img"]).float()                                   # [B, 2, H, W]
    label = batch["label"]                                                 # [B, H, W] int64 in {0, 1, 255}
    total = F.cross_entropy(logits, label, ignore_index=IGNORE, reduction="sum")
    return total / (label != IGNORE).sum().clamp(min=1)


def refinement_loss(model: nn.Module, batch: dict, eps: float, lambda1: float, scale_small: float,
                    scale_large: float, threshold: float, pixel_gate: bool, pcl_at: str = "logits") -> torch.Tensor:
    """PCL plus lambda1 * multi-scale JSD (when > 0). `pcl_at` "logits" (the reference): PCL on the labels
    resized to the logit grid (stride 16: one label pixel per 16 x 16 block); "pixels": on the logits
    upsampled bilinearly to the labels' size, so every labelled pixel counts. MCL stays on the logit grid."""
    img, label_cls = batch["img"], batch["label_cls"]
    logits = model(img, label_cls)
    size = logits.shape[-2:]
    # PIL NEAREST samples pixel centres, which is torch's 'nearest-exact'
    labels = F.interpolate(batch["label"][:, None].float(), size, mode="nearest-exact")[:, 0].long()
    if pcl_at == "pixels":
        full = F.interpolate(logits.float(), batch["label"].shape[-2:], mode="bilinear", align_corners=False)
        loss = balanced_cross_entropy(full, batch["label"].long(), eps)
    else:
        loss = balanced_cross_entropy(logits, labels, eps)
    if lambda1 > 0:
        probs = [torch.softmax(logits.float(), dim=1)]
        for factor in (scale_small, scale_large):
            scaled = F.interpolate(img, scale_factor=factor, mode="bilinear", align_corners=True)
            other = F.interpolate(model(scaled, label_cls).float(), size, mode="bilinear", align_corners=True)
            probs.append(torch.softmax(other, dim=1))
        loss = loss + lambda1 * multiscale_jsd(probs, labels, threshold, pixel_gate)
    return loss
