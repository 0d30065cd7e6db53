"""Moments speed through the server's engine: windows scored per second over an hour of
cached video, and the time to the full list, beside the same windows as plain 16-token asks.

    python bench/moments.py                # GPU: Qwen2-7B shapes, random weights; CPU: the tiny model
    python bench/moments.py --layers 1     # released widths, one layer a stack: the GPU path on a CPU
    python bench/moments.py --kept 1200    # an hour with a third of its seconds kept by pruning

An hour of cached video is `--kept` frames (default 3600: every second kept, the most tokens
a window can hold) made up at the model's widths. Its 16-second windows (225) are scored as
a moments request scores them (`server.scoring.WindowScorer`: at most LONGVU_MAX_RUNNING in
the engine at once, packed into prefill passes); then the same windows, with the same
question, go through the engine as 16-token asks: the same number in flight (the engine
batches their decode steps), and one at a time (a client asking about each window in turn;
`--sequential-windows` of them, the time scaled to all). Target: a window's score costs at
most a third of a 16-token ask.

A score is one prefill; an ask is the same prefill (and the same input building) plus its
decode steps. So the ratio against batched asks is bounded by how much of an ask its prefill
is: its decode steps are shared by all the rows of a step.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.released import bench_model  # noqa: E402
from models.language.sampling import SamplingParams  # noqa: E402
from models.language.yes_no import YesNo, question  # noqa: E402
from models.vision.encoded import EncodedVideo  # noqa: E402
from server.asks import Ask  # noqa: E402
from server.decoding.local import LocalDecoding  # noqa: E402
from server.engine import Engine  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.moments import tile  # noqa: E402
from server.scoring import WindowScorer  # noqa: E402

QUERY = "a person opens a door"


async def score_all(engine: Engine, metrics: Metrics, windows: list[EncodedVideo], in_flight: int,
                    scorer: YesNo) -> tuple[float, float]:
    """Seconds to the first score and to the last, as a moments request scores them."""
    started = time.perf_counter()
    run = WindowScorer(engine, metrics, scorer, [(w, question(QUERY)) for w in windows], in_flight)
    run.start()
    first = 0.0
    async for _ in run.results():
        first = first or time.perf_counter() - started
    return first, time.perf_counter() - started


async def ask_all(engine: Engine, metrics: Metrics, windows: list[EncodedVideo], in_flight: int,
                  tokens: int) -> float:
    """Seconds for the same windows as `tokens`-token asks, `in_flight` at a time."""
    loop = asyncio.get_running_loop()
    params = SamplingParams(max_new_tokens=tokens, ignore_eos=True)
    room = asyncio.Semaphore(in_flight)

    async def one(window: EncodedVideo) -> None:
        async with room:
            ask = Ask(window, question(QUERY), params, metrics, loop, time.perf_counter())
            ask.timings["cache_load_s"] = 0.0
            engine.submit(ask)
            while (event := await ask.events.get())[0] == "token":
                pass
            if event[0] != "done":
                raise RuntimeError(event[1])

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in windows))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny checkpoint even on a GPU")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--layers", type=int, help="released widths, every stack cut to this many layers")
    parser.add_argument("--kept", type=int, default=3600, help="frames kept of the cached hour")
    parser.add_argument("--window-s", type=float, default=16.0)
    parser.add_argument("--tokens", type=int, default=16, help="the asks' answer length")
    parser.add_argument("--max-running", type=int, default=16, help="LONGVU_MAX_RUNNING: windows and asks in flight")
    parser.add_argument("--prefill-tokens", type=int, default=8192, help="LONGVU_PREFILL_TOKENS")
    parser.add_argument("--sequential-windows", type=int, default=32, help="windows asked one at a time")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    model, description = bench_model(args.tiny, args.layers, args.dtype)
    print(description)
    metrics = Metrics()
    decoding = LocalDecoding(model, metrics, args.max_running, args.tokens, args.prefill_tokens, cuda_graphs=True)
    engine = Engine(model, metrics, decoding, max_queue=args.max_running)
    engine.warm_up()
    cfg = model.config
    hour = EncodedVideo.made_up(args.kept, cfg.query_num_list[0], cfg.vision_hidden_size, every_s=3600 / args.kept)
    hour = dataclasses.replace(hour, features=hour.features.to(model.dtype))
    spans = tile(0.0, 3600.0, args.window_s, args.window_s, 100_000, "window_s")
    windows = [hour.window(a, b) for a, b in spans]
    scorer = YesNo.from_tokenizer(model.tokenizer)
    try:
        asyncio.run(score_all(engine, metrics, windows[: args.max_running], args.max_running, scorer))  # warm
        print(f"{len(windows)} windows of {args.window_s:g} s, {windows[0].frames_cached} frames each; "
              f"{args.max_running} in flight, prefill passes of {args.prefill_tokens} positions")
        asks = f"{args.tokens}-token asks"
        print(f"| run | windows/s | first moment | full list | as {asks}, {args.max_running} at once | ratio "
              f"| as {asks}, one at a time | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        some = windows[: args.sequential_windows]
        for run in range(1, args.runs + 1):
            first, scored = asyncio.run(score_all(engine, metrics, windows, args.max_running, scorer))
            batched = asyncio.run(ask_all(engine, metrics, windows, args.max_running, args.tokens))
            alone = asyncio.run(ask_all(engine, metrics, some, 1, args.tokens)) * len(windows) / len(some)
            print(f"| {run} | {len(windows) / scored:.1f} | {first * 1e3:.0f} ms | {scored:.2f} s | {batched:.2f} s "
                  f"| {scored / batched:.2f} | {alone:.2f} s | {scored / alone:.2f} |", flush=True)
        print("ratio: the full list's time over the asks' (target <= 0.33)")
        if model.device.type == "cuda":
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
