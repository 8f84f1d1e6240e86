"""webapp/ without a browser: the CSV files, the path gate, every route (Starlette's TestClient), the token,
and what the pages refuse. tests/test_webapp_browser.py runs the pages in headless Chromium."""
from __future__ import annotations

import io
import json
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from misc import fileio, footprints, geodata, imutils, tilecsv
from misc.errors import UserError
from tests.conftest import write_tiny_dataset
from webapp import __main__ as cli
from webapp.app import Config, create_app
from webapp.files import CsvStore, image_index, safe_file
from webapp.label import progress, uncertain_first
from webapp.mapdata import place

POST = {"X-Webapp": "1"}
XYZ_ORIGIN = (785000, 412000, 20)  # x, y, zoom of the first map tile


def positives(root: Path) -> list[str]:
    return (root / "train_aug_building.txt").read_text().split()


def write_work_space(root: Path, ws: Path) -> None:
    """What S2-S9 write for the positives of `root` (maps made from the ground truth, blurred), the metrics
    files the Review page reads thresholds from, and a footprints.geojson."""
    for name in positives(root):
        gt = imutils.gt_to_binary(imutils.read_mask(root / "SegmentationClassAug" / f"{name}.png")).astype(np.float32)
        soft = cv2.GaussianBlur(gt, (0, 0), 3)
        soft /= max(float(soft.max()), 1e-6)
        fileio.save_npy_dict(ws / "cam" / f"{name}.npy", {"keys": np.array([0]), "high_res": soft[None]})
        fileio.save_npy_dict(ws / "lpcam_mask" / f"{name}.npy", {"keys": np.array([0]), "high_res": soft[None]})
        fileio.save_npy_dict(ws / "amn_cam" / f"{name}.npy", {"keys": np.array([0]), "high_res": np.stack([1 - soft, soft])})
        fileio.save_png(ws / "pseudo_mask" / f"{name}.png", (soft > 0.6).astype(np.uint8))
    fileio.save_json(ws / "metrics_cam.json", {"threshold": 0.08, "threshold_rule": "fixed"})
    fileio.save_json(ws / "metrics_lpcam_mask.json", {"threshold": 0.4925, "threshold_rule": "auto"})
    fileio.save_json(ws / "metrics_amn_cam.json", {"threshold": 0.67, "threshold_rule": "fixed"})
    fileio.save_json(ws / "metrics_ir_label.json", {"conf_fg_thres": 0.25, "conf_bg_thres": 0.15})


def xyz_name(column: int, row: int) -> str:
    x, y, z = XYZ_ORIGIN
    return f"OAM-{x + column}-{y + row}-{z}"


def write_map(masks: dict[str, np.ndarray], ws: Path) -> None:
    """S11's masks seg/<xyz name>.png and S12's footprints.geojson made from them (misc.footprints)."""
    polys, props = [], []
    for name, mask in masks.items():
        fileio.save_png(ws / "seg" / f"{name}.png", mask)
        transform, crs = geodata.xyz_transform(*geodata.parse_xyz_name(name), size=mask.shape[0])
        for poly in footprints.polygonise(mask, transform):
            polys.append(poly)
            props.append({"source": name})
    cleaned = footprints.clean_footprints(polys, geodata.WEB_MERCATOR, orthogonalise=False)
    sources = [props[int(np.argmax([p.intersection(c).area for p in polys]))] for c in cleaned]
    footprints.write_footprints(cleaned, sources, geodata.WEB_MERCATOR, ws / "footprints.geojson",
                                ws / "footprints.gpkg")


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    root = write_tiny_dataset(tmp_path / "data")
    ws = tmp_path / "ws"
    write_work_space(root, ws)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 12:44] = 1
    write_map({xyz_name(0, 0): mask}, ws)
    images = tmp_path / "tiles"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(images / f"t{i}.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(images / f"{xyz_name(0, 0)}.png")
    return {"root": root, "ws": ws, "images": images, "labels": tmp_path / "labels.csv", "tmp": tmp_path}


@pytest.fixture
def client(setup: dict[str, Path]) -> TestClient:
    cfg = Config(images=setup["images"], labels=setup["labels"], dataset=setup["root"], work_space=setup["ws"])
    return TestClient(create_app(cfg), raise_server_exceptions=False)


# ---------------------------------------------------------------------------------------------- files

def test_tile_csv_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    assert tilecsv.read_labels(path) == {}
    tilecsv.write_labels(path, {"b": 1, "a": 0})
    assert path.read_text() == "name,label\na,0\nb,1\n"
    assert tilecsv.read_labels(path) == {"a": 0, "b": 1}
    tilecsv.write_review(tmp_path / "review.csv", {"x": "reject", "y": "accept"})
    assert tilecsv.rejected_tiles(tmp_path / "review.csv") == {"x"}
    assert tilecsv.rejected_tiles(tmp_path / "absent.csv") == set()
    path.write_text("name,label\na,2\n")
    with pytest.raises(UserError, match="labels.csv line 2"):
        tilecsv.read_labels(path)
    path.write_text("tile,label\n")
    with pytest.raises(UserError, match="expected the header 'name,label'"):
        tilecsv.read_labels(path)
    path.write_text("name,label\n../x,1\n")
    with pytest.raises(UserError, match="line 2"):
        tilecsv.read_labels(path)


def test_safe_file_refuses_every_way_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    (root / ".hidden.png").write_bytes(b"x")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"s")
    os.symlink(secret, root / "link.png")
    os.symlink(root / "sub" / "a.png", root / "inside.png")
    assert safe_file(root, "sub/a.png") == (root / "sub" / "a.png").resolve()
    assert safe_file(root, "inside.png") == (root / "sub" / "a.png").resolve()
    for bad in ("../secret.png", "sub/../../secret.png", str(secret), "/etc/passwd", "link.png", ".hidden.png",
                "sub\\a.png", "sub//a.png", "./sub/a.png", "sub", "", "absent.png", "a\0.png"):
        assert safe_file(root, bad) is None, bad
    assert "link" not in image_index(root) and ".hidden" not in image_index(root)


def test_two_writers_lose_no_answer(tmp_path: Path) -> None:
    store = CsvStore(tmp_path / "labels.csv", tilecsv.read_labels, tilecsv.write_labels)
    threads = [threading.Thread(target=store.set, args=(f"tile_{i:03d}", i % 2)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tilecsv.read_labels(tmp_path / "labels.csv") == {f"tile_{i:03d}": i % 2 for i in range(40)}
    store.set("tile_000", None)
    assert "tile_000" not in tilecsv.read_labels(tmp_path / "labels.csv")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_progress_line_and_uncertain_order() -> None:
    names = [f"t{i}" for i in range(2000)]
    labels = {n: int(i < 156) for i, n in enumerate(names[:412])}
    assert progress(names, labels)["line"] == "412 / 2,000 labelled, 38% building"
    order = uncertain_first(["a", "b", "c", "d", "e"], {"a": 1}, {"a": 0.5, "b": 0.9, "c": 0.45, "d": 0.1})
    assert order == ["c", "b", "d", "e", "a"]


def test_xyz_tile_is_placed_and_a_plain_image_is_not(tmp_path: Path) -> None:
    bounds = place(Path(f"{xyz_name(0, 0)}.png"))
    (south, west), (north, east) = bounds
    assert south < north and west < east and abs((east - west) - 360 / 2 ** 20) < 1e-9
    assert place(tmp_path / "tile_00.png") is None


# --------------------------------------------------------------------------------------------- routes

def test_label_routes_save_each_answer_at_once(client: TestClient, setup: dict[str, Path]) -> None:
    state = client.get("/api/label").json()
    assert state["tiles"] == [xyz_name(0, 0), "t0", "t1", "t2", "t3"] and state["line"] == "0 / 5 labelled, 0% building"
    assert client.post("/api/label", json={"name": "t1", "label": 1}, headers=POST).json()["labelled"] == 1
    assert client.post("/api/label", json={"name": "t2", "label": 0}, headers=POST).json()["line"] == "2 / 5 labelled, 50% building"
    assert tilecsv.read_labels(setup["labels"]) == {"t1": 1, "t2": 0}
    client.post("/api/label", json={"name": "t2", "label": None}, headers=POST)  # undo
    assert tilecsv.read_labels(setup["labels"]) == {"t1": 1}
    assert client.post("/api/label", json={"name": "t9", "label": 1}, headers=POST).status_code == 404
    assert client.post("/api/label", json={"name": "t1", "label": 2}, headers=POST).status_code == 400
    assert client.post("/api/label", content=b"{", headers=POST).status_code == 400
    assert client.post("/api/label", json={"name": "t1", "label": 0}).status_code == 403  # no X-Webapp header
    response = client.get("/tile/t1")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert client.get("/tile/nope").status_code == 404
    for page in ("/label", "/review", "/map"):
        assert "<html" in client.get(page).text


def test_review_routes(client: TestClient, setup: dict[str, Path]) -> None:
    data = client.get("/api/review").json()
    names = positives(setup["root"])
    assert [t["name"] for t in data["tiles"]] == names
    assert all(0.0 <= t["iou"] <= 1.0 for t in data["tiles"]) and data["available"]["pseudo"]
    assert {t["stage"]: t["threshold"] for t in data["thresholds"]} == {
        "Seed CAM (S2)": 0.08, "BAC map (S3)": 0.4925, "AR map (S7)": 0.67, "Confident labels (S5)": 0.25}
    for stage in ("image", "seed", "bac", "ar", "pseudo"):
        response = client.get(f"/review/picture/{stage}/{names[0]}.png")
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG", stage
    assert client.get(f"/review/picture/nope/{names[0]}.png").status_code == 404
    assert client.get("/review/picture/seed/tile_99.png").status_code == 404
    assert client.post("/api/review", json={"name": names[0], "decision": "reject"}, headers=POST).json() == {
        "decided": 1, "rejected": 1}
    assert tilecsv.read_review(setup["ws"] / "review.csv") == {names[0]: "reject"}
    assert client.post("/api/review", json={"name": names[0], "decision": "maybe"}, headers=POST).status_code == 400
    assert client.post("/api/review", json={"name": "t1", "decision": "accept"}, headers=POST).status_code == 404


def test_a_crafted_map_file_is_one_line_not_a_traceback(client: TestClient, setup: dict[str, Path]) -> None:
    name = positives(setup["root"])[0]
    (setup["ws"] / "cam" / f"{name}.npy").write_bytes(b"\x93NUMPY garbage")
    response = client.get(f"/review/picture/seed/{name}.png")
    assert response.status_code == 409 and "Traceback" not in response.text and "cam" in response.text


def test_map_routes(client: TestClient) -> None:
    info = client.get("/api/map").json()
    assert [i["name"] for i in info["images"]] == [xyz_name(0, 0)]
    assert [m["name"] for m in info["masks"]] == [xyz_name(0, 0)] and info["footprints"]
    mask = client.get(f"/map/mask/{xyz_name(0, 0)}.png")
    assert mask.status_code == 200 and np.asarray(Image.open(io.BytesIO(mask.content))).shape[2] == 4
    assert client.get(f"/map/image/{xyz_name(0, 0)}.png").status_code == 200
    assert client.get("/map/other/x.png").status_code == 404
    geojson = client.get("/download/footprints.geojson?download=1")
    assert "attachment" in geojson.headers["content-disposition"]
    feature = json.loads(geojson.content)["features"][0]
    assert feature["properties"]["source"] == xyz_name(0, 0) and feature["properties"]["area_m2"] > 0


def test_raw_files_only_inside_the_roots(client: TestClient, setup: dict[str, Path]) -> None:
    secret = setup["tmp"] / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, setup["ws"] / "link.txt")
    assert client.get("/files/work/metrics_cam.json").json()["threshold"] == 0.08
    assert client.get("/files/dataset/train_aug.txt").status_code == 200
    for url in ("/files/work/link.txt", "/files/work/../secret.txt", "/files/work/..%2Fsecret.txt",
                "/files/work/%2e%2e/secret.txt", f"/files/work/{secret}", "/files/work//etc/passwd",
                "/files/work/%2Fetc%2Fpasswd", "/files/nope/x.txt", "/files/work/cam", "/files/work/run.pth",
                "/tile/..%2F..%2Fsecret", "/files/work/a%5c..%5csecret.txt"):
        response = client.get(url)
        assert response.status_code in (400, 404), url
        assert "secret" not in response.text.replace("secret.txt", ""), url
    # requests exactly as sent, past any client's normalisation of '..'
    for path in ("/files/work/../secret.txt", "/files/work/cam/../../secret.txt", "/tile/../secret"):
        assert raw_get(client.app, path) in (400, 404), path
    assert raw_get(client.app, "/files/work/metrics_cam.json") == 200


def raw_get(app, path: str) -> int:
    """The status of a GET of `path` sent to the ASGI app as it is."""
    import asyncio

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"testserver")], "http_version": "1.1", "scheme": "http", "root_path": "",
             "server": ("testserver", 80), "client": ("127.0.0.1", 1)}
    messages, sent = [], []

    async def receive() -> dict:
        if sent:  # the body went with the first call; later calls wait for a disconnect that never comes
            await asyncio.Event().wait()
        sent.append(True)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    return messages[0]["status"]


def test_token_and_host_checks(setup: dict[str, Path]) -> None:
    cfg = Config(dataset=setup["root"], work_space=setup["ws"], token="s3cret", allowed_hosts=("testserver",))
    client = TestClient(create_app(cfg))
    assert client.get("/api/review").status_code == 403
    assert client.get("/api/review?token=wrong").status_code == 403
    first = client.get("/review?token=s3cret")
    assert first.status_code == 200 and "webapp_token" in first.headers["set-cookie"]
    assert client.get("/api/review").status_code == 200  # the cookie now carries it
    assert client.get("/api/review", headers={"Host": "evil.example"}).status_code == 400


def test_pages_that_are_off_say_which_flags_turn_them_on(setup: dict[str, Path]) -> None:
    client = TestClient(create_app(Config(images=setup["images"], labels=setup["labels"])))
    assert client.get("/api/info").json() == {"label": True, "review": False, "map": False}
    response = client.get("/api/review")
    assert response.status_code == 404 and "--dataset and --work_space" in response.text


def test_command_line_mistakes_are_one_line(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cases = [([], "--images DIR --labels"), (["--images", str(setup["images"])], "--images needs --labels"),
             (["--labels", "x.csv"], "--labels needs --images"),
             (["--images", str(setup["tmp"] / "absent"), "--labels", "x.csv"], "is not a folder"),
             (["--dataset", str(setup["root"]), "--work_space", str(setup["ws"]), "--classifier", "absent.pt"],
              "--classifier absent.pt"),
             (["--dataset", str(setup["root"])], "--dataset needs --work_space")]
    for argv, match in cases:
        with pytest.raises(UserError, match=match):
            cli.config(cli.build_parser().parse_args(argv))
    setup["labels"].write_text("name,label\nt0,yes\n")
    with pytest.raises(UserError, match="line 2"):
        cli.config(cli.build_parser().parse_args(["--images", str(setup["images"]), "--labels", str(setup["labels"])]))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--port", "70000"])
    given = ["--dataset", str(setup["root"]), "--work_space", str(setup["ws"])]
    public = cli.config(cli.build_parser().parse_args([*given, "--host", "0.0.0.0"]))
    assert public.token and not public.allowed_hosts and public.review_file == setup["ws"] / "review.csv"
    local = cli.config(cli.build_parser().parse_args(given))
    assert local.token is None and "127.0.0.1" in local.allowed_hosts
    area = cli.config(cli.build_parser().parse_args(["--work_space", str(setup["ws"]), "--images", str(setup["images"])]))
    assert area.labels is None and area.dataset is None  # the map of a new area over its images


def test_uncertain_first_order_from_the_classifier(setup: dict[str, Path]) -> None:
    import torch

    from net import cam
    from net.backbones import reparameterize
    from net.checkpoints import save_net

    torch.manual_seed(0)
    path = setup["tmp"] / "cam_deploy.pt"
    save_net(reparameterize(cam.Net("RepVGG-Tiny")), path, deploy=True)
    app = create_app(Config(images=setup["images"], labels=setup["labels"], classifier=path))
    app.state.probabilities.join(timeout=60)
    client = TestClient(app)
    client.post("/api/label", json={"name": "t0", "label": 1}, headers=POST)
    state = client.get("/api/label?order=uncertain").json()
    assert state["uncertain_ready"] and "5 tiles scored" in state["classifier"]
    p = state["probabilities"]
    assert set(p) == {xyz_name(0, 0), "t0", "t1", "t2", "t3"} and all(0 <= v <= 1 for v in p.values())
    open_tiles = [n for n in state["tiles"] if n != "t0"]
    distance = [abs(p[n] - 0.5) for n in open_tiles]  # p is rounded to 3 decimals for the page
    assert state["tiles"][-1] == "t0" and all(a <= b + 1e-3 for a, b in zip(distance, distance[1:]))


def test_a_broken_classifier_leaves_the_label_page_working(setup: dict[str, Path]) -> None:
    path = setup["tmp"] / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    app = create_app(Config(images=setup["images"], labels=setup["labels"], classifier=path))
    app.state.probabilities.join(timeout=60)
    state = TestClient(app).get("/api/label?order=uncertain").json()
    assert not state["uncertain_ready"] and "classifier failed" in state["classifier"] and "broken.pt" in state["classifier"]
    assert len(state["tiles"]) == 5


def test_a_georeferenced_scene_is_placed_and_drawn(tmp_path: Path) -> None:
    import rasterio
    import rasterio.errors
    from rasterio.transform import from_origin

    scenes, ws = tmp_path / "scenes", tmp_path / "ws"
    scenes.mkdir()
    ws.mkdir()
    with rasterio.open(scenes / "scene.tif", "w", driver="GTiff", height=40, width=60, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500_000.0, 4_600_000.0, 0.5, 0.5)) as dst:
        dst.write(np.full((3, 40, 60), 120, np.uint8))
    with warnings.catch_warnings():  # a scene without CRS, on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(scenes / "plain.tif", "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 8, 8), np.uint8))
    client = TestClient(create_app(Config(images=scenes, work_space=ws)))
    info = client.get("/api/map").json()
    assert [i["name"] for i in info["images"]] == ["scene"] and not info["footprints"]  # no CRS: not placed
    (south, west), (north, east) = info["images"][0]["bounds"]
    assert 41.5 < south < north < 41.6 and 14.9 < west < east < 15.1  # UTM 33N at 500 km E, 4600 km N
    picture = client.get("/map/image/scene.png")
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size == (60, 40)
    assert client.get("/download/footprints.geojson").status_code == 404
