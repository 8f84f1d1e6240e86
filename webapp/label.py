"""The Label page's state: the tiles, the answers so far, progress, and the "uncertain first" order.

Reads:  the images of --images; the labels CSV (misc.tilecsv); with --classifier, the S1 classifier's deploy
        file, run once over the tiles in a background thread for their building probability.
Writes: nothing (answers go through webapp.files.CsvStore).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from misc import imutils

log = logging.getLogger(__name__)


def progress(names: Sequence[str], labels: Mapping[str, int]) -> dict:
    """Counts over the tiles of the folder (answers for other names in the CSV are kept but not counted) and
    the line the page shows: '412 / 2,000 labelled, 38% building'."""
    answered = [labels[n] for n in names if n in labels]
    building = sum(answered)
    share = round(100 * building / len(answered)) if answered else 0
    line = f"{len(answered):,} / {len(names):,} labelled, {share}% building"
    return {"total": len(names), "labelled": len(answered), "building": building, "line": line}


def uncertain_first(names: Sequence[str], labels: Mapping[str, int], probability: Mapping[str, float]) -> list[str]:
    """Unlabelled tiles with a probability, closest to 0.5 first (the answers that teach the classifier most),
    then the other unlabelled tiles, then the labelled ones, each group in `names` order."""
    unlabelled = [n for n in names if n not in labels]
    scored = sorted((n for n in unlabelled if n in probability), key=lambda n: abs(probability[n] - 0.5))
    rest = [n for n in unlabelled if n not in probability]
    return scored + rest + [n for n in names if n in labels]


def load_classifier(path: Path):
    """The S1 classifier from its deploy file, in eval mode on the CPU: the web app's one use of the network
    modules, kept here so a rename touches one line."""
    from net import cam
    from net.checkpoints import load_net

    return load_net(cam.Net, path, deploy=True, device="cpu")


def building_probability(model, image: np.ndarray) -> float:
    """sigmoid of the classifier's building logit for one uint8 HxWx3 image."""
    import torch

    x = torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(image)))[None]
    with torch.inference_mode():
        return float(torch.sigmoid(model(x)).flatten()[0])


class Probabilities:
    """Building probabilities of the tiles, filled by a background thread; `status` says how far it is."""

    def __init__(self, classifier: Path | None, tiles: Mapping[str, Path]) -> None:
        self.values: dict[str, float] = {}
        self.status = "no classifier (start with --classifier to get the uncertain-first order)"
        self._classifier, self._tiles = classifier, dict(tiles)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._classifier is None or self._thread is not None:
            return
        self.status = "loading the classifier"
        self._thread = threading.Thread(target=self._run, name="webapp-probabilities", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ready(self) -> bool:
        return bool(self._tiles) and len(self.values) == len(self._tiles)

    def _run(self) -> None:
        try:
            model = load_classifier(self._classifier)
            for i, (name, path) in enumerate(self._tiles.items()):
                self.status = f"classifier: {i:,} / {len(self._tiles):,} tiles scored"
                self.values[name] = building_probability(model, imutils.read_image(path))
            self.status = f"classifier: {len(self._tiles):,} tiles scored"
            log.info("webapp: building probability of %d tiles from %s", len(self._tiles), self._classifier)
        except Exception as err:  # shown on the page; the Label page works without the order
            self.status = f"classifier failed: {err}"
            log.warning("webapp: %s", self.status)
