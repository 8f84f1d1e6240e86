"""Start the web app (webapp/app.py) on this machine.

    python -m webapp --images tiles/ --labels labels.csv                 # Label (before a dataset exists)
    python -m webapp --dataset Dataset/mine --work_space result_mine     # Review and Map
    python -m webapp --work_space result_area --images scenes/           # Map of a new area over its scenes
    python -m webapp --dataset Dataset/mine --work_space result_mine --classifier sess_mine/repvgg_cam_deploy.pt \\
        --images tiles/ --labels labels.csv                               # all three, uncertain tiles first

Reads the folders given; writes only the labels CSV (--labels) and the review decisions (--review_file).
Binds 127.0.0.1 unless --host says otherwise; on any other host every request needs the token printed here.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from misc import tilecsv
from misc.errors import UserError, exit_on_user_error
from misc.pyutils import setup_logging
from webapp.app import Config, create_app, new_token

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free one)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m webapp", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=None,
                   help="folder of tiles to label (PNG, JPEG or TIFF) [<dataset>/JPEGImages]; also imagery of the map")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels CSV to write (name,label; 1 building, 0 none), read by python -m voc12.prepare labels")
    p.add_argument("--dataset", type=Path, default=None, help="dataset root (voc12/layout.py) to review and map")
    p.add_argument("--work_space", type=Path, default=None, help="run_sample.py's --work_space of that dataset")
    p.add_argument("--review_file", type=Path, default=None,
                   help="review decisions to write (name,decision), read by S11 [<work_space>/review.csv]")
    p.add_argument("--classifier", type=Path, default=None,
                   help="S1 classifier deploy file (<cam_weights_name>_deploy.pt) for the uncertain-first order")
    p.add_argument("--host", type=str, default="127.0.0.1",
                   help="address to bind; any but 127.0.0.1/localhost requires the printed token on every request")
    p.add_argument("--port", type=port_number, default=8765, help="port to bind")
    return p


def config(args: argparse.Namespace) -> Config:
    """The checked Config of the flags: every mistake is one UserError line naming the flag."""
    if args.images is None and args.dataset is None and args.work_space is None and args.labels is None:
        raise UserError("give --images DIR --labels FILE.csv to label, or --dataset DIR --work_space DIR to review")
    for flag in ("images", "dataset", "work_space"):
        folder = getattr(args, flag)
        if folder is not None and not folder.is_dir():
            raise UserError(f"--{flag} {folder} is not a folder")
    if args.labels is not None and args.images is None and args.dataset is None:
        raise UserError("--labels needs --images DIR (or --dataset DIR): the tiles to label")
    if args.images is not None and args.labels is None and args.work_space is None:
        raise UserError("--images needs --labels FILE.csv: the file the answers are saved to")
    if args.dataset is not None and args.work_space is None and args.labels is None:
        raise UserError("--dataset needs --work_space DIR (to review and map) or --labels FILE.csv (to label its images)")
    if args.classifier is not None and not args.classifier.is_file():
        raise UserError(f"--classifier {args.classifier} does not exist; run --train_cam_pass True first or drop the flag")
    for flag in ("labels", "review_file"):
        path = getattr(args, flag)
        if path is not None:
            if path.parent.exists() and not path.parent.is_dir():
                raise UserError(f"--{flag} {path}: {path.parent} is not a folder")
            tilecsv.read_labels(path) if flag == "labels" else tilecsv.read_review(path)  # malformed: one line now
    review_file = args.review_file or (args.work_space / "review.csv" if args.work_space is not None else None)
    if review_file is not None:
        tilecsv.read_review(review_file)
    loopback = args.host in LOOPBACK
    return Config(images=args.images, labels=args.labels, dataset=args.dataset, work_space=args.work_space,
                  review_file=review_file, classifier=args.classifier, token=None if loopback else new_token(),
                  allowed_hosts=LOOPBACK if loopback else ())


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = config(args)
    import uvicorn

    setup_logging()
    app = create_app(cfg)
    host = f"[{args.host}]" if ":" in args.host else args.host
    query = f"?token={cfg.token}" if cfg.token else ""
    pages = [(title, path) for title, path, on in (
        ("Label", "label", cfg.labels is not None), ("Review", "review", None not in (cfg.dataset, cfg.work_space)),
        ("Map", "map", cfg.work_space is not None)) if on]
    for title, path in pages:
        print(f"{title}: http://{host}:{args.port}/{path}{query}", flush=True)
    if cfg.token:
        print(f"token (needed on every request from another machine): {cfg.token}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    logging.captureWarnings(True)
    exit_on_user_error(main)
