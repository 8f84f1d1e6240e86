"""The web app: three pages (Label, Review, Map), their JSON API and the files they show (Starlette).

Reads:  the images folder (--images), the dataset (--dataset) and the work space (--work_space), only through
        webapp.files.safe_file; the package's own static/ folder (pages, scripts, the vendored Leaflet).
Writes: the labels CSV (--labels) and the review decisions (--review_file), nothing else.

Routes: /label, /review, /map (pages); /api/... (JSON; every POST needs the header `X-Webapp: 1`, which a page
of another site cannot send without the browser asking first); /tile/<name> (a tile to label),
/review/picture/<stage>/<name>.png, /map/image/<name>.png, /map/mask/<name>.png, /files/<root>/<path>
(raw files of a root), /download/footprints.geojson. A missing file is a 404 and a mistake in the inputs
(a malformed .npy, ...) a 409 with its one line, never a traceback page.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from misc import tilecsv
from misc.errors import UserError
from webapp import mapdata
from webapp.files import CsvStore, image_index, safe_file
from webapp.label import Probabilities, progress, uncertain_first
from webapp.review import ReviewData, STAGES, png_bytes

STATIC = Path(__file__).resolve().parent / "static"
RAW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".geojson", ".json", ".csv", ".txt", ".gpkg")
TOKEN_COOKIE = "webapp_token"


@dataclass(frozen=True)
class Config:
    """What the app serves; every path is checked by webapp.__main__ before the app is built."""
    images: Path | None = None
    labels: Path | None = None
    dataset: Path | None = None
    work_space: Path | None = None
    review_file: Path | None = None
    classifier: Path | None = None
    token: str | None = None          # required on every request when set
    allowed_hosts: tuple[str, ...] = field(default=())  # Host headers accepted; () = any (tests)

    @property
    def label_images(self) -> Path | None:
        """The tiles to label: --images, else the dataset's images."""
        if self.images is not None:
            return self.images
        return self.dataset / "JPEGImages" if self.dataset is not None else None

    def roots(self) -> dict[str, Path]:
        """The folders whose files may be served, by the name used in /files/<root>/..."""
        found = {"images": self.images, "dataset": self.dataset, "work": self.work_space}
        return {k: v for k, v in found.items() if v is not None}


def new_token() -> str:
    return secrets.token_urlsafe(18)


class Guard:
    """ASGI middleware in front of every route: refuses encoded slashes, backslashes and dots in the raw path,
    unknown Host headers (DNS rebinding), a missing or wrong token (when one is set; a right `?token=` also sets
    a cookie so the page's own requests carry it) and POSTs without the `X-Webapp: 1` header."""

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: tuple[str, ...]) -> None:
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?")[0].lower()
        headers = Headers(scope=scope)
        refusal = None
        if any(code in raw for code in (b"%2f", b"%5c", b"%2e", b"%00", b"\\")):
            refusal = (400, "refused: encoded slash, backslash or dot in the path")
        elif self.allowed_hosts and headers.get("host", "").rsplit(":", 1)[0].strip("[]") not in self.allowed_hosts:
            refusal = (400, "refused: unknown Host header")
        elif scope["method"] == "POST" and headers.get("x-webapp") != "1":
            refusal = (403, "refused: a POST needs the header X-Webapp: 1")
        set_cookie = False
        if refusal is None and self.token:
            query = Request(scope).query_params.get("token", "")
            cookie = Request(scope).cookies.get(TOKEN_COOKIE, "")
            if query and hmac.compare_digest(query, self.token):
                set_cookie = True
            elif not (cookie and hmac.compare_digest(cookie, self.token)):
                refusal = (403, "refused: open the address with ?token=... printed when the server started")
        if refusal is not None:
            await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
            return
        if not set_cookie:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(cfg: Config) -> Starlette:
    """The app for `cfg` (pages it cannot serve say why instead of failing)."""
    tiles = image_index(cfg.label_images) if cfg.label_images is not None else {}
    labels = CsvStore(cfg.labels, tilecsv.read_labels, tilecsv.write_labels) if cfg.labels is not None else None
    review_file = cfg.review_file or (cfg.work_space / "review.csv" if cfg.work_space is not None else None)
    decisions = CsvStore(review_file, tilecsv.read_review, tilecsv.write_review) if review_file is not None else None
    review = ReviewData(cfg.dataset, cfg.work_space) if cfg.dataset is not None and cfg.work_space is not None else None
    probabilities = Probabilities(cfg.classifier, tiles)
    map_images = {**(image_index(cfg.dataset / "JPEGImages") if cfg.dataset is not None else {}),
                  **(image_index(cfg.images) if cfg.images is not None else {})}
    seg_dir = cfg.work_space / "seg" if cfg.work_space is not None else None
    roots = cfg.roots()

    def page(name: str):
        async def endpoint(request: Request) -> Response:
            return FileResponse(STATIC / f"{name}.html", media_type="text/html")
        return endpoint

    async def home(request: Request) -> Response:
        return RedirectResponse("/label" if labels is not None else "/review" if review is not None else "/map")

    async def info(request: Request) -> Response:
        return JSONResponse({"label": labels is not None, "review": review is not None,
                             "map": cfg.work_space is not None})

    # ----------------------------------------------------------------------------------------- Label
    def label_state(rows: dict, order: str) -> dict:
        names, scored = list(tiles), probabilities.values.copy()  # the thread may be adding to it
        ordered = uncertain_first(names, rows, scored) if order == "uncertain" else names
        return {"tiles": ordered, "labels": {n: rows[n] for n in names if n in rows}, **progress(names, rows),
                "file": str(cfg.labels), "uncertain_ready": probabilities.ready, "classifier": probabilities.status,
                "probabilities": {n: round(p, 3) for n, p in scored.items()}}

    async def label_tiles(request: Request) -> Response:
        store = _need(labels, "labelling", "--images and --labels")
        rows = await run_in_threadpool(store.snapshot)
        return JSONResponse(label_state(rows, request.query_params.get("order", "file")))

    async def label_answer(request: Request) -> Response:
        store = _need(labels, "labelling", "--images and --labels")
        body = await _json(request)
        name, value = body.get("name"), body.get("label")
        if name not in tiles:
            raise HTTPException(404, f"no tile {name!r} in {cfg.label_images}")
        if value not in (0, 1, None):
            raise HTTPException(400, "label must be 1 (building), 0 (none) or null (no answer)")
        rows = await run_in_threadpool(store.set, name, value)
        return JSONResponse(progress(list(tiles), rows))

    async def tile(request: Request) -> Response:
        path = tiles.get(request.path_params["name"])
        real = safe_file(path.parent, path.name) if path is not None else None
        if real is None:
            raise HTTPException(404, "no such tile")
        return await _image_response(real)

    # ---------------------------------------------------------------------------------------- Review
    async def review_tiles(request: Request) -> Response:
        data = _need(review, "review", "--dataset and --work_space")
        rows = await run_in_threadpool(decisions.snapshot)

        def listing() -> list[dict]:
            return [{"name": n, "decision": rows.get(n), "iou": data.iou(n)} for n in data.names]

        return JSONResponse({"tiles": await run_in_threadpool(listing), "thresholds": data.thresholds(),
                             "stages": [{"key": s.key, "title": s.title} for s in STAGES],
                             "available": data.available(), "file": str(decisions.path)})

    async def review_answer(request: Request) -> Response:
        data = _need(review, "review", "--dataset and --work_space")
        body = await _json(request)
        name, value = body.get("name"), body.get("decision")
        if name not in data.names:
            raise HTTPException(404, f"no positive tile {name!r} in {cfg.dataset}")
        if value not in (*tilecsv.DECISIONS, None):
            raise HTTPException(400, "decision must be 'accept', 'reject' or null (no decision)")
        rows = await run_in_threadpool(decisions.set, name, value)
        return JSONResponse({"decided": len(rows), "rejected": sum(v == tilecsv.REJECT for v in rows.values())})

    async def review_picture(request: Request) -> Response:
        data = _need(review, "review", "--dataset and --work_space")
        png = await run_in_threadpool(data.picture, request.path_params["stage"], request.path_params["name"])
        if png is None:
            raise HTTPException(404, "no such picture")
        return Response(png, media_type="image/png")

    # ------------------------------------------------------------------------------------------- Map
    def map_layers() -> dict:
        masks = image_index(seg_dir) if seg_dir is not None else {}
        geojson = safe_file(cfg.work_space, "footprints.geojson") if cfg.work_space is not None else None
        return {"images": mapdata.layers(map_images), "masks": mapdata.layers(masks),
                "footprints": geojson is not None}

    async def map_info(request: Request) -> Response:
        _need(cfg.work_space, "the map", "--work_space")
        return JSONResponse(await run_in_threadpool(map_layers))

    async def map_picture(request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        if kind not in ("image", "mask"):
            raise HTTPException(404, "no such layer")
        index = map_images if kind == "image" else (image_index(seg_dir) if seg_dir is not None else {})
        path = index.get(name)
        real = safe_file(path.parent, path.name) if path is not None else None
        if real is None:
            raise HTTPException(404, "no such image")
        draw = mapdata.picture if kind == "image" else mapdata.mask_picture
        return Response(await run_in_threadpool(lambda: png_bytes(draw(real))), media_type="image/png")

    async def footprints(request: Request) -> Response:
        real = safe_file(cfg.work_space, "footprints.geojson") if cfg.work_space is not None else None
        if real is None:
            raise HTTPException(404, "no footprints.geojson in the work space: run --make_footprints_pass True")
        download = "download" in request.query_params
        return FileResponse(real, media_type="application/geo+json",
                            filename="footprints.geojson" if download else None,
                            content_disposition_type="attachment" if download else "inline")

    # ------------------------------------------------------------------------------------- raw files
    async def raw_file(request: Request) -> Response:
        root = roots.get(request.path_params["root"])
        relative = request.path_params["path"]
        real = safe_file(root, relative) if root is not None else None
        if real is None or real.suffix.lower() not in RAW_SUFFIXES:
            raise HTTPException(404, "no such file")
        return FileResponse(real)

    async def user_error(request: Request, err: Exception) -> Response:
        return PlainTextResponse(f"error: {err}", status_code=409)

    async def http_error(request: Request, err: Exception) -> Response:
        return PlainTextResponse(str(getattr(err, "detail", "error")), status_code=getattr(err, "status_code", 500))

    routes = [
        Route("/", home), Route("/label", page("label")), Route("/review", page("review")), Route("/map", page("map")),
        Route("/api/info", info),
        Route("/api/label", label_tiles), Route("/api/label", label_answer, methods=["POST"]),
        Route("/api/review", review_tiles), Route("/api/review", review_answer, methods=["POST"]),
        Route("/api/map", map_info),
        Route("/tile/{name}", tile),
        Route("/review/picture/{stage}/{name}.png", review_picture),
        Route("/map/{kind:str}/{name}.png", map_picture),
        Route("/download/footprints.geojson", footprints),
        Route("/files/{root}/{path:path}", raw_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={UserError: user_error, HTTPException: http_error,
                                                        404: http_error, 405: http_error})
    app.add_middleware(Guard, token=cfg.token, allowed_hosts=cfg.allowed_hosts)
    app.state.probabilities = probabilities
    probabilities.start()
    return app


def _need(value, what: str, flags: str):
    if value is None:
        raise HTTPException(404, f"{what} is off: start the server with {flags}")
    return value


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body is not a JSON object")
    return body


async def _image_response(path: Path) -> Response:
    """A PNG or JPEG as it is; other images (TIFF, which browsers do not show) re-encoded as PNG."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return FileResponse(path)
    from misc import imutils

    return Response(await run_in_threadpool(lambda: png_bytes(imutils.read_image(path))), media_type="image/png")
