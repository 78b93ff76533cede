"""``python -m mck synth OUT [--sessions N --frames N --seed S --size WxH --drop-frames --tiny
--realism clean|realistic|hard]``."""

from __future__ import annotations

import argparse

from mck.synth import TINY_SIZE
from mck.synth.writer import Spec, write_project


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m mck synth",
                                     description="Write a synthetic 6-camera project with ground truth.")
    parser.add_argument("out", help="output folder (the project's data root)")
    parser.add_argument("--sessions", type=int, default=None, help="animal sessions (default 2; 1 with --tiny)")
    parser.add_argument("--frames", type=int, default=None, help="frames per animal video (default 600)")
    parser.add_argument("--calibration-frames", type=int, default=None, help="frames per chessboard video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default=None, help="WxH (default 640x512)")
    parser.add_argument("--drop-frames", action="store_true", help="one camera drops frames (alignment file)")
    parser.add_argument("--no-alignment", action="store_true",
                        help="with --drop-frames: write no aligned_frame_numbers.csv (undeclared drops, for sync_check)")
    parser.add_argument("--tiny", action="store_true",
                        help="320x256, 1 session of 40 frames, 120 calibration frames: for tests")
    parser.add_argument("--realism", choices=("clean", "realistic", "hard"), default="clean",
                        help="calibration footage: clean (default), realistic (IR-dark arena, LED arrays, plate on a "
                             "handle, blur, noise, H.264 at a lab bitrate) or hard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    tiny = args.tiny
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else (TINY_SIZE if tiny else (640, 512))
    spec = Spec(out=args.out, sessions=args.sessions if args.sessions is not None else (1 if tiny else 2),
                frames=args.frames or (40 if tiny else 600),
                calibration_frames=args.calibration_frames or (120 if tiny else 360), seed=args.seed,
                size=size, drop_frames=args.drop_frames,
                write_alignment=not args.no_alignment, labels_per_video=12 if tiny else 40, workers=args.workers,
                realism=args.realism)
    manifest = write_project(spec, progress=not args.quiet)
    print(f"mck synth: wrote {spec.out}: calibration {manifest['calibration']}, sessions "
          f"{', '.join(manifest['sessions'])}, {manifest['labelled_images']} labelled images "
          f"in {manifest['seconds']} s")
    return 0
