"""Answer speed through the server's engine: batch-1 tokens/s, aggregate tokens/s and TTFT.

    python bench/answer.py                 # GPU: Qwen2-7B shapes, random weights; CPU: the tiny model
    python bench/answer.py --tiny          # the tiny checkpoint wherever it runs
    python bench/answer.py --layers 1      # released widths, one layer a stack: the GPU path on a CPU
    python bench/answer.py --during-ingest # answers and an ingest together, each beside its solo speed
    python bench/answer.py --hf            # beside each row, Hugging Face generate() on the same prompts
    python bench/answer.py --llm-url URL   # the same table with the answers from vLLM (LONGVU_LLM_URL)
    python bench/answer.py --weights int8  # the LLM's linear layers in int8 (LONGVU_LLM_WEIGHTS)

On a GPU (or anywhere with --layers) it builds the released `LongVU_Qwen2_7B` shapes with
random weights (`bench/released.py`; nothing downloaded), makes one cached video of an hour (400 kept frames at
1280x720, so the question runs in the STC regime, as in production), starts the engine
(warm-up and CUDA graphs included, as the server does), then asks 1, 4, 16 and 64
questions at once, 128 tokens each, and prints a table. The first question after start-up
is timed on its own. Decode-only tokens/s counts the tokens after every answer's first
over the time after the last first token: at 16 questions the wall-time aggregate is
bounded by 16 long prefills whatever decode does.

With --hf each row also runs transformers' `generate()` on the same model and prompts (the
n prompts built, left-padded into one batch, greedy, exactly `--tokens` new tokens): its
TTFT (building the n prompts plus the first token) and aggregate tokens/s, and ours as a
ratio of them (TTFT: theirs / ours, above 1 is faster; tokens/s: ours / theirs).

With --llm-url the engine hands every built question to that server (`RemoteDecoding`, as
the server does with LONGVU_LLM_URL; serve the same model: the tiny checkpoint's export on
CPU) and first prints what sending `prompt_embeds` costs at Qwen2-7B's width in float16.

With --during-ingest it measures fair sharing instead: one answer alone, an ingest alone
(720p frames of changing blocks through the towers, pruning and fusion, as the server's jobs
hand them to the engine), then both at once; it prints the answer's tokens/s and the
ingest's frames/s beside their solo figures, and the engine's ingest share (targets: the
answer keeps >= 70 % of its solo rate, the ingest >= 60 % of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.released import QWEN2_7B, bench_model  # noqa: E402
from kernels.specialization import compiled_variants  # noqa: E402
from models.build import build_inputs  # noqa: E402
from models.language.sampling import SamplingParams  # noqa: E402
from models.model import LongVU  # noqa: E402
from models.vision.encode import encode_video  # noqa: E402
from models.vision.encoded import EncodedVideo  # noqa: E402
from models.vision.frames import Frame  # noqa: E402
from models.vision.tower_steps import TimedSteps  # noqa: E402
from server.asks import Ask  # noqa: E402
from server.decoding import Decoding  # noqa: E402
from server.decoding.local import LocalDecoding  # noqa: E402
from server.decoding.remote import RemoteDecoding, prompt_embeds  # noqa: E402
from server.engine import Engine  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.settings import Settings  # noqa: E402

QUESTION = "What happens in the video? Describe every scene in order."


def hour_of_video(model: LongVU, frames: int = 400) -> EncodedVideo:
    """400 frames kept of an hour, as pruning and the cap leave it."""
    return EncodedVideo.made_up(frames, model.config.query_num_list[0], model.config.vision_hidden_size,
                                every_s=3600 / frames)


def timed_tokens(on_token: Callable[[int], None], times: list[float]) -> Callable[[int], None]:
    def record(token: int) -> None:
        times.append(time.perf_counter())
        on_token(token)
    return record


async def ask_many(engine: Engine, metrics: Metrics, encoded: EncodedVideo, n: int, tokens: int) -> dict:
    loop = asyncio.get_running_loop()
    params = SamplingParams(max_new_tokens=tokens, ignore_eos=True)
    started = time.perf_counter()
    asks = [Ask(encoded, f"{QUESTION} ({i})", params, metrics, loop, time.perf_counter()) for i in range(n)]
    made: list[list[float]] = [[] for _ in asks]  # when each token was made (a token may show no text yet)
    for ask, times in zip(asks, made, strict=True):
        ask.on_token = timed_tokens(ask.on_token, times)  # type: ignore[method-assign]
        ask.timings["cache_load_s"] = 0.0  # the video is in memory here
        engine.submit(ask)

    async def finish(ask: Ask) -> None:
        while (event := await ask.events.get())[0] == "token":
            pass
        if event[0] != "done":
            raise RuntimeError(event[1])

    await asyncio.gather(*(finish(a) for a in asks))
    end = time.perf_counter()
    wall = end - started
    ttfts = sorted(a.timings["ttft_s"] for a in asks)
    decode_rates = [(a.generated - 1) / (a.timings["total_s"] - a.timings["ttft_s"]) for a in asks]
    # Decode alone: the tokens after every answer's first, over the time after the last first
    # token (while prompts still prefill, the wall-time aggregate counts their prefill too).
    last_first = max(t[0] for t in made)
    after = sum(1 for t in made for at in t if at > last_first)
    return {
        "n": n, "wall": wall, "aggregate": sum(a.generated for a in asks) / wall,
        "decode_only": after / (end - last_first) if end > last_first else 0.0,
        "per_stream": statistics.median(decode_rates),
        "ttft_p50": statistics.median(ttfts), "ttft_p99": ttfts[min(n - 1, round(0.99 * (n - 1)))],
        "prompt": asks[0].built.prompt_tokens if asks[0].built else 0,
    }


@torch.inference_mode()
def hf_generate(model: LongVU, encoded: EncodedVideo, n: int, tokens: int) -> dict:
    """The same n questions through transformers' `generate()`, one left-padded batch."""
    def run(new_tokens: int) -> float:
        started = time.perf_counter()
        prompts = [build_inputs(model, encoded, f"{QUESTION} ({i})").inputs_embeds[0] for i in range(n)]
        longest = max(p.shape[0] for p in prompts)
        embeds = torch.zeros(n, longest, prompts[0].shape[1], dtype=model.dtype, device=model.device)
        mask = torch.zeros(n, longest, dtype=torch.long, device=model.device)
        for row, prompt in enumerate(prompts):
            embeds[row, longest - prompt.shape[0] :], mask[row, longest - prompt.shape[0] :] = prompt, 1
        pad = model.config.raw["eos_token_id"]
        model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0, pad_token_id=pad)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    ttft = run(1)
    return {"ttft": ttft, "aggregate": n * tokens / run(tokens)}


def transfer_cost() -> None:
    """Serialising the embeddings of a ~4.3k- and an ~8k-position prompt at 7B width, fp16."""
    for positions in (4300, 8142):
        embeds = torch.randn(positions, QWEN2_7B["hidden_size"])
        started = time.perf_counter()
        payload = prompt_embeds(embeds, torch.float16)
        print(f"prompt_embeds of {positions} positions x {QWEN2_7B['hidden_size']} (fp16): "
              f"{len(payload) / 1e6:.1f} MB of base64 in {(time.perf_counter() - started) * 1e3:.0f} ms")


def remote_decoding(url: str, model: LongVU, metrics: Metrics, max_running: int) -> Decoding:
    decoding = RemoteDecoding(Settings(llm_url=url, max_running=max_running), model, metrics)
    deadline = time.monotonic() + 60
    while decoding.unavailable is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if decoding.unavailable is not None:
        raise SystemExit(decoding.unavailable)
    return decoding


def blocks(frames: int, width: int = 1280, height: int = 720) -> list[Frame]:
    """Frames of changing colour blocks, one a second: most survive DINO pruning. (Tower
    chunks are 64 frames: on CPU, ask for enough tokens that the answer spans several.)"""
    rng = np.random.default_rng(0)
    return [Frame(i, float(i), np.ascontiguousarray(rng.integers(0, 255, (height // 40, width // 40, 3),
                                                                 dtype=np.uint8).repeat(40, 0).repeat(40, 1)))
            for i in range(frames)]


def ingest(engine: Engine, model: LongVU, frames: list[Frame], steps: TimedSteps, stop: threading.Event,
           marks: list[tuple[float, int]]) -> None:
    """Frames through the towers, as a server job sends them, until `stop`; `marks` gets
    (time, frames so far) after every DINO step."""
    done = 0
    while not stop.is_set():
        encode_video(model, frames, device_step=engine.run_on_device, tower_steps=steps,
                     progress=lambda _pts, encoded, _survived: marks.append((time.perf_counter(), done + encoded)))
        done += len(frames)


def rate(marks: list[tuple[float, int]], start: float, end: float) -> float:
    inside = [(t, n) for t, n in marks if start <= t <= end]
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else 0.0


def during_ingest(engine: Engine, model: LongVU, metrics: Metrics, encoded: EncodedVideo, tokens: int,
                  step_ms: float, n_frames: int) -> None:
    frames, marks = blocks(n_frames), []  # type: ignore[var-annotated]
    steps = TimedSteps(step_ms / 1000)  # as the server's jobs size their steps
    encode_video(model, frames[:16], device_step=engine.run_on_device, tower_steps=steps)  # warm, timed
    answer_alone = asyncio.run(ask_many(engine, metrics, encoded, 1, tokens))["per_stream"]
    started = time.perf_counter()
    encode_video(model, frames, device_step=engine.run_on_device, tower_steps=steps)
    ingest_alone = len(frames) / (time.perf_counter() - started)
    stop = threading.Event()
    feeder = threading.Thread(target=ingest, args=(engine, model, frames, steps, stop, marks))
    feeder.start()
    while not marks:  # the ingest under way
        time.sleep(0.05)
    started = time.perf_counter()
    answer_shared = asyncio.run(ask_many(engine, metrics, encoded, 1, tokens))["per_stream"]
    ingest_shared = rate(marks, started, time.perf_counter())
    share = engine.share.ingest_fraction
    stop.set()
    feeder.join()
    print("| | alone | together | kept | target |")
    print("|---|---|---|---|---|")
    print(f"| answer tok/s | {answer_alone:.1f} | {answer_shared:.1f} | {answer_shared / answer_alone:.0%} | >= 70% |")
    print(f"| ingest frames/s | {ingest_alone:.1f} | {ingest_shared:.1f} | {ingest_shared / ingest_alone:.0%} "
          f"| >= 60% |")
    print(f"engine's ingest share while both ran: {share:.2f} (LONGVU_INGEST_SHARE 0.3); tower steps of "
          f"{steps.frames('dino', frames[0].rgb.shape[:2])} DINO frames (LONGVU_INGEST_STEP_MS {step_ms:g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny checkpoint even on a GPU")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"),
                        help="default: float16 on a GPU, float32 on the CPU")
    parser.add_argument("--layers", type=int, help="released widths, every transformer stack cut to this many "
                        "layers (the same code path on a CPU in seconds)")
    parser.add_argument("--frames", type=int, default=400, help="frames kept of the cached hour")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--max-running", type=int, default=16)
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--prefill-tokens", type=int, default=8192, help="LONGVU_PREFILL_TOKENS")
    parser.add_argument("--during-ingest", action="store_true", help="an answer and an ingest together")
    parser.add_argument("--ingest-step-ms", type=float, default=25.0, help="LONGVU_INGEST_STEP_MS")
    parser.add_argument("--ingest-frames", type=int, default=64, help="720p frames an ingest pass takes")
    parser.add_argument("--cpu-threads", type=int, help="LONGVU_CPU_THREADS")
    parser.add_argument("--hf", action="store_true", help="transformers' generate() beside each row")
    parser.add_argument("--llm-url", help="answers from this OpenAI-compatible server (vLLM), as LONGVU_LLM_URL")
    parser.add_argument("--weights", choices=("float", "int8"), default="float", help="LONGVU_LLM_WEIGHTS")
    parser.add_argument("--prefix-cache", type=int, default=2, help="LONGVU_PREFIX_CACHE (0: every prompt "
                        "prefilled whole)")
    args = parser.parse_args()

    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    model, description = bench_model(args.tiny, args.layers, args.dtype, args.weights)
    device = model.device
    print(description)

    metrics = Metrics()
    started = time.perf_counter()
    if args.llm_url:
        transfer_cost()
        decoding = remote_decoding(args.llm_url, model, metrics, args.max_running)
    else:
        decoding = LocalDecoding(model, metrics, max_running=args.max_running, max_new_tokens=args.tokens,
                                 prefill_tokens=args.prefill_tokens, cuda_graphs=not args.no_graphs,
                                 prefix_cache=args.prefix_cache)
    engine = Engine(model, metrics, decoding, max_queue=max(args.concurrency))
    engine.warm_up()
    graphs = isinstance(decoding, LocalDecoding) and decoding.batch.graphs
    print(f"engine ready in {time.perf_counter() - started:.1f} s (answers: {type(decoding).__name__}, "
          f"CUDA graphs: {graphs})")
    warm_variants = compiled_variants()
    encoded = hour_of_video(model, args.frames)
    try:
        if args.during_ingest:
            during_ingest(engine, model, metrics, encoded, args.tokens, args.ingest_step_ms, args.ingest_frames)
            return
        first = asyncio.run(ask_many(engine, metrics, encoded, 1, args.tokens))
        print(f"first question after start-up: TTFT {first['ttft_p50'] * 1e3:.0f} ms, "
              f"prompt {first['prompt']} positions")
        peers = " HF TTFT | HF tok/s | TTFT ratio | tok/s ratio |" if args.hf else ""
        print(f"| concurrent | aggregate tok/s | per-stream tok/s | TTFT p50 | TTFT p99 | wall | decode-only tok/s |"
              f"{peers}")
        print("|---|---|---|---|---|---|---|" + "---|" * 4 * args.hf)
        for n in args.concurrency:
            r = asyncio.run(ask_many(engine, metrics, encoded, n, args.tokens))
            row = (f"| {n} | {r['aggregate']:.1f} | {r['per_stream']:.1f} | {r['ttft_p50'] * 1e3:.0f} ms "
                   f"| {r['ttft_p99'] * 1e3:.0f} ms | {r['wall']:.2f} s | {r['decode_only']:.1f} |")
            if args.hf:
                hf = hf_generate(model, encoded, n, args.tokens)
                row += (f" {hf['ttft'] * 1e3:.0f} ms | {hf['aggregate']:.1f} | {hf['ttft'] / r['ttft_p50']:.2f} "
                        f"| {r['aggregate'] / hf['aggregate']:.2f} |")
            print(row, flush=True)
        if isinstance(decoding, LocalDecoding):
            shapes = decoding.batch.graph_shapes()
            print(f"decode graphs: {shapes['captured']} captured, {shapes['eager']} eager shapes, "
                  f"{decoding.batch.graph_fallbacks} eager steps")
        print(f"Triton variants compiled: {warm_variants} at warm-up, {compiled_variants() - warm_variants} after")
        if device.type == "cuda":
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
                  f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
