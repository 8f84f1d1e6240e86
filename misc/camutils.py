"""Map arithmetic shared by the multi-scale stages (S2, S3c, S7)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """ceil(H / stride), ceil(W / stride)."""
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


def strided_up_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """stride * ceil(H / stride), the padded size the OS-16 maps are upsampled to."""
    return stride * math.ceil(size[0] / stride), stride * math.ceil(size[1] / stride)


def upsample_crop(maps: torch.Tensor, size: tuple[int, int], stride: int = 16) -> torch.Tensor:
    """crop_{HxW}(up_{Hu x Wu}(maps)) with Hu = 16*ceil(H/16), bilinear, align_corners=False (reference)."""
    up = F.interpolate(maps, strided_up_size(size, stride), mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


def merge_flips(maps: torch.Tensor) -> torch.Tensor:
    """[2B, C, h, w] with image/flip pairs interleaved -> [B, C, h, w] = m(img) + flip_W(m(flip img))."""
    return maps[0::2] + maps[1::2].flip(-1)


def max_normalise(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Divide each [C, H, W] map by its maximum over (H, W) plus eps (per channel)."""
    peak = maps.flatten(-2).amax(-1)[..., None, None]
    return maps / (peak + eps)


def stack_pyramids(packs: list[dict], scale_index: int) -> torch.Tensor:
    """[2B, 3, h, w] for one scale of B same-size tiles (image and flip interleaved per tile)."""
    return torch.cat([pack["img"][scale_index] for pack in packs], dim=0)
