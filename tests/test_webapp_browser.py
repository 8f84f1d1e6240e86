"""webapp/ in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium runs the
whole flow on demo tiles: label 10 tiles with the keyboard, restart the server and find them kept, prepare the
dataset from the CSV, review and reject a tile, find a footprint on the map.

Skipped where Chromium, its driver or Selenium is missing (.ci/run installs them). With WEBAPP_SCREENSHOTS=DIR the
test also saves the README's three screenshots there (label.png, review.png, map.png):

    WEBAPP_SCREENSHOTS=docs/img bash script/run_tests.sh tests/test_webapp_browser.py
"""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc import imutils, tilecsv
from tests.test_webapp import write_map, write_work_space, xyz_name
from voc12 import demo, image_labels

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed (pip install -r requirements.txt)")
ActionChains = pytest.importorskip("selenium.webdriver.common.action_chains").ActionChains
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                 reason="no chromium / chromedriver: apt-get install chromium chromium-driver")]
SCREENSHOT_MAX_BYTES = 150_000


# ------------------------------------------------------------------------------------------------ helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m webapp ...` as a user starts it, on a free port; `stop` ends it (only this process)."""

    def __init__(self, *argv: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self._log = open(log, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "webapp", *argv, "--port", str(self.port)],
                                        cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server ended: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not start in 60 s: {log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="webapp-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1180,860"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), what=f"{url} to load")


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def press(driver, key: str) -> None:
    driver.find_element("tag name", "body").send_keys(key)


def screenshot(driver, name: str) -> None:
    """Save the page as docs' picture when WEBAPP_SCREENSHOTS names a folder (colours reduced to stay small)."""
    folder = os.environ.get("WEBAPP_SCREENSHOTS")
    if not folder:
        return
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    for colours in (128, 64, 32):
        Image.open(path).convert("RGB").quantize(colours, dither=Image.Dither.NONE).save(path, optimize=True)
        if path.stat().st_size <= SCREENSHOT_MAX_BYTES:
            break


def pictures_shown(driver) -> None:
    """Wait until the Review page shows all five pictures of its tile."""
    wait_for(lambda: driver.execute_script(
        "return [...document.querySelectorAll('#pictures img')].filter(i => i.complete && i.naturalWidth > 0).length") == 5,
        what="the five pictures")


def demo_tiles(tmp: Path) -> tuple[Path, dict[str, float], dict[str, np.ndarray]]:
    """Two demo scenes (18 tiles) as XYZ tiles side by side: images, building fraction and mask of each."""
    source = tmp / "demo"
    demo.make_demo(source, seed=0, num_scenes=2)
    tiles = tmp / "tiles"
    tiles.mkdir()
    fractions, masks = {}, {}
    with open(source / "tiles.csv", newline="") as f:
        for row in csv.DictReader(f):
            scene, r, c = (int(part[1:]) for part in row["name"].split("_")[1:])
            name = xyz_name(3 * scene + c, r)
            shutil.copy(source / "JPEGImages" / f"{row['name']}.png", tiles / f"{name}.png")
            fractions[name] = float(row["building_fraction"])
            masks[name] = imutils.gt_to_binary(imutils.read_mask(source / "SegmentationClassAug" / f"{row['name']}.png"))
    return tiles, fractions, masks


def prepare_from_labels(tiles: Path, labels_csv: Path, masks: dict[str, np.ndarray], out: Path) -> None:
    """The dataset of the labelled tiles as a user makes it (`voc12.prepare labels`), plus the ground truth of
    those tiles (0 / 255, the layout's convention) for the Review page's IoU."""
    image_labels.prepare_labels(tiles, labels_csv, out)
    labels = tilecsv.read_labels(labels_csv)
    (out / "SegmentationClassAug").mkdir()
    for name, mask in masks.items():
        if name in labels:
            Image.fromarray((mask * 255).astype(np.uint8)).save(out / "SegmentationClassAug" / f"{name}.png")


# --------------------------------------------------------------------------------------------------- flow

def test_label_restart_prepare_review_and_map(browser, tmp_path: Path) -> None:
    tiles, fractions, masks = demo_tiles(tmp_path)
    labels_csv, log = tmp_path / "labels.csv", tmp_path / "server.log"

    # Label 10 tiles with the keyboard: B or N by the tile's roof cover, one undo, one skip
    server = Server("--images", str(tiles), "--labels", str(labels_csv), log=log)
    try:
        open_page(browser, f"{server.url}/label")
        assert text(browser, "progress") == "0 / 18 labelled, 0% building"
        keys = browser.find_element("css selector", ".keys").text
        assert "B" in keys and "undo" in keys and "building" in keys  # the keys are on the page
        expected, skipped = {}, None
        press(browser, "b")
        press(browser, "u")  # takes the B back and shows the tile again
        while len(expected) < 10:
            name = text(browser, "tile-name")
            if len(expected) == 4 and skipped is None:
                skipped = name
                press(browser, "s")
                continue
            expected[name] = int(fractions[name] > 0)
            press(browser, "b" if expected[name] else "n")
        wait_for(lambda: labels_csv.is_file() and tilecsv.read_labels(labels_csv) == expected, what="the CSV")
        share = round(100 * sum(expected.values()) / 10)
        wait_for(lambda: text(browser, "progress") == f"10 / 18 labelled, {share}% building", what="the progress line")
        press(browser, "\ue012")  # arrow left: back to the last answer
        screenshot(browser, "label.png")
    finally:
        server.stop()

    # Restart: the answers are kept and labelling resumes at the first tile without one (the skipped tile)
    server = Server("--images", str(tiles), "--labels", str(labels_csv), log=log)
    try:
        open_page(browser, f"{server.url}/label")
        assert text(browser, "progress") == f"10 / 18 labelled, {share}% building"
        assert text(browser, "tile-name") == skipped
    finally:
        server.stop()

    # Prepare the dataset from the CSV; the stages' outputs stand in for a run (tests/test_webapp.py)
    dataset, ws = tmp_path / "dataset", tmp_path / "ws"
    prepare_from_labels(tiles, labels_csv, masks, dataset)
    write_work_space(dataset, ws)
    write_map(masks, ws)

    server = Server("--dataset", str(dataset), "--work_space", str(ws), "--images", str(tiles), "--labels", str(labels_csv),
                    log=log)
    try:
        # Review: every picture shows, R rejects the tile on screen and the decision is in review.csv at once
        open_page(browser, f"{server.url}/review")
        first = text(browser, "tile-name")
        assert first == sorted(n for n, v in expected.items() if v)[0]
        pictures_shown(browser)
        assert "BAC map (S3): threshold 0.492" in text(browser, "thresholds")
        press(browser, "r")
        wait_for(lambda: tilecsv.read_review(ws / "review.csv") == {first: "reject"}, what="review.csv")
        assert text(browser, "tile-name") != first
        browser.find_element("css selector", "th[data-sort=iou]").click()  # sort by IoU, worst first
        press(browser, "\ue013")  # arrow up
        pictures_shown(browser)
        screenshot(browser, "review.png")

        # Map: the footprints over the imagery; a click on one tells its area and source tile
        open_page(browser, f"{server.url}/map")
        assert "footprints" in text(browser, "summary")
        link = browser.find_element("id", "download").get_attribute("href")
        assert link.endswith("/download/footprints.geojson?download=1")
        shapes = wait_for(lambda: browser.find_elements("css selector", "path.leaflet-interactive"), what="footprints")
        largest = max(shapes, key=lambda s: s.size["width"] * s.size["height"])
        ActionChains(browser).move_to_element(largest).click().perform()
        popup = wait_for(lambda: [p.text for p in browser.find_elements("css selector", ".leaflet-popup-content")
                                  if p.text], what="a popup")[0]
        assert "m²" in popup and "source tile: OAM-" in popup
        wait_for(lambda: browser.execute_script(
            "return getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'"), what="the popup to fade in")
        assert browser.execute_script(
            "return [...document.querySelectorAll('img.leaflet-image-layer')].filter(i => i.naturalWidth > 0).length") >= 18
        screenshot(browser, "map.png")
    finally:
        server.stop()
    assert "Traceback" not in log.read_text()
