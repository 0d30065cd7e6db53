"""Bytes the token cache holds per video, measured on real `EncodedVideo`s of the tiny model
and scaled to the released shapes (SVA rows 1024 wide, float16 on a GPU): what to size a
Redis, or a Redis Cluster, by.

    python bench/cache_size.py [--minutes 2 10] [--checkpoint DIR] [--workdir DIR]

A cached video is its frames' SVA rows (144 a frame, at most 400 frames once DINO pruning
applies, so every video longer than a few minutes costs about the same) plus a few bytes
of metadata per frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.encode_memory import write_blocks_video  # noqa: E402

RELEASED_WIDTH = 1024  # the SVA output width of the released checkpoints
RELEASED_ITEM = 2  # float16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--checkpoint")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    from models.model import load_longvu
    from models.vision.encode import encode_video
    from models.vision.frames import sample_frames

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longvu-cache-size-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from models.tiny import write_tiny_checkpoint

        checkpoint = str(write_tiny_checkpoint(workdir / "tiny"))
    model = load_longvu(checkpoint, device="cpu")
    print(f"{'video':>7} {'sampled':>8} {'cached':>7} {'rows':>7} {'width':>6} {'bytes':>11} {'of rows':>8} "
          f"{'released MB':>12}")
    for minutes in args.minutes:
        video = workdir / f"blocks_{minutes}min.mp4"
        if not video.exists():
            write_blocks_video(video, minutes)
        encoded = encode_video(model, sample_frames(str(video)))
        size = len(encoded.to_bytes())
        rows, width = encoded.features.shape[0] * encoded.features.shape[1], encoded.features.shape[2]
        row_bytes = rows * width * encoded.features.element_size()
        released = size - row_bytes + rows * RELEASED_WIDTH * RELEASED_ITEM  # metadata as measured
        print(f"{minutes:>4}min {encoded.frames_sampled:>8} {encoded.frames_cached:>7} {rows:>7} {width:>6} "
              f"{size:>11,} {row_bytes / size:>8.1%} {released / 1e6:>12.1f}")
    print(f"an hour of video at the released shapes: at most 400 frames x 144 rows x {RELEASED_WIDTH} x "
          f"{RELEASED_ITEM} bytes = {400 * 144 * RELEASED_WIDTH * RELEASED_ITEM / 1e6:.1f} MB of rows")


if __name__ == "__main__":
    main()
