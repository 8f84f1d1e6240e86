"""Overlay pictures for a person to look at: image | map as heat | prediction and ground truth."""
from __future__ import annotations

import cv2
import numpy as np


def overlay_panel(image: np.ndarray, building_map: np.ndarray, pred: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """Three panels side by side (HxW each, uint8 RGB): the image; the map as a jet heat blend;
    the prediction tinted red with the ground-truth outline in green."""
    heat = cv2.applyColorMap(np.clip(building_map * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    heat_blend = (0.5 * image + 0.5 * heat).astype(np.uint8)
    tinted = image.astype(np.float32)
    tinted[pred > 0] = 0.5 * tinted[pred > 0] + 0.5 * np.array([255, 0, 0], dtype=np.float32)
    tinted = tinted.astype(np.uint8)
    if gt is not None:
        contours, _ = cv2.findContours((gt > 0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        tinted = np.ascontiguousarray(tinted)
        cv2.drawContours(tinted, contours, -1, (0, 255, 0), 1)
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([image, gap, heat_blend, gap, tinted], axis=1)
