"""Overlay pictures for a person to look at: image | map as heat | prediction and ground truth."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from misc import imutils


def overlay_panel(image: np.ndarray, building_map: np.ndarray, pred: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """Three panels side by side (HxW each, uint8 RGB): the image; the map as a jet heat blend;
    the prediction tinted red with the ground-truth outline in green."""
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, heat_blend(image, building_map), gap, mask_tint(image, pred, gt)], axis=1)


def mask_pair(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """Two panels side by side: the image, and the image with `mask_tint`'s prediction and ground truth."""
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, mask_tint(image, pred, gt)], axis=1)


def heat_blend(image: np.ndarray, building_map: np.ndarray) -> np.ndarray:
    """The image (uint8 HxWx3) half and half with a map in [0, 1] (HxW) as a jet heat picture."""
    heat = cv2.applyColorMap(np.clip(building_map * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.5 * image + 0.5 * heat).astype(np.uint8)


def mask_tint(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """The image with the predicted building pixels (pred > 0) tinted red and the ground truth outlined in green."""
    tinted = image.astype(np.float32)
    tinted[pred > 0] = 0.5 * tinted[pred > 0] + 0.5 * np.array([255, 0, 0], dtype=np.float32)
    tinted = np.ascontiguousarray(tinted.astype(np.uint8))
    if gt is not None:
        contours, _ = cv2.findContours((gt > 0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tinted, contours, -1, (0, 255, 0), 1)
    return tinted


VIS_MAX_SIDE = 1024
SHEET_PANEL = 256  # long side of each panel of `contact_sheet`


def contact_sheet(panels: list[np.ndarray], columns: int = 5, side: int = SHEET_PANEL) -> np.ndarray:
    """Pictures (uint8 HxWx3) shrunk to a long side of at most `side`, in rows of `columns`, in order, on white
    with a 4-pixel gap."""
    if not panels:
        raise ValueError("contact_sheet needs at least one picture")
    shrunk = []
    for panel in panels:
        scale = side / max(panel.shape[:2])
        if scale < 1:
            panel = cv2.resize(panel, (max(1, round(panel.shape[1] * scale)), max(1, round(panel.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        shrunk.append(panel)
    cell_h, cell_w, gap = max(p.shape[0] for p in shrunk), max(p.shape[1] for p in shrunk), 4
    rows, cols = -(-len(shrunk) // columns), min(columns, len(shrunk))
    sheet = np.full((rows * (cell_h + gap) - gap, cols * (cell_w + gap) - gap, 3), 255, np.uint8)
    for i, panel in enumerate(shrunk):
        y, x = (i // columns) * (cell_h + gap), (i % columns) * (cell_w + gap)
        sheet[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
    return sheet


def seg_overlay(image: np.ndarray, logits: torch.Tensor, mask: np.ndarray, gt_path: Path | None) -> np.ndarray:
    """visutils.overlay_panel (image | building probability | mask with the GT outline), each panel
    shrunk so its long side is at most VIS_MAX_SIDE."""
    prob = torch.softmax(logits, dim=0)[1].numpy()
    gt = imutils.read_gt(gt_path) if gt_path is not None else None
    scale = VIS_MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        dsize = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
        prob = cv2.resize(prob, dsize, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, dsize, interpolation=cv2.INTER_NEAREST)
        gt = cv2.resize(gt, dsize, interpolation=cv2.INTER_NEAREST) if gt is not None else None
    return overlay_panel(image, prob, mask, gt)


def footprint_overlay(image: np.ndarray, rings: list[np.ndarray], colour: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """The image (uint8 HxWx3 RGB) with polygon outlines drawn: each ring an Nx2 array of (column, row) pixels."""
    out = np.ascontiguousarray(image.copy())
    if rings:
        cv2.polylines(out, [np.round(r).astype(np.int32).reshape(-1, 1, 2) for r in rings], True, colour, 1, cv2.LINE_AA)
    return out
