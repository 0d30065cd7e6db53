"""One command for whoever has a GPU: the GPU-only tests, then the answer and ingest benches
at the released shapes, and one table with the targets beside the figures.

    python bench/gpu_check.py              # within 8 minutes on one H100/H200
    python bench/gpu_check.py --quick      # the tests and the answer benches (float16, int8 weights) only
    python bench/gpu_check.py --smoke      # every step and parser on the CPU, one layer a stack (CI)

Each step runs in a process group of its own (its output streams through), with a time
limit after which the whole group is killed, so one that fails or hangs still leaves the
others' figures and no child keeps the GPU. A step that exits non-zero reads FAILED in the
table, whatever figures it printed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/kernels", "tests/models/vision/test_preprocess.py", "tests/models/test_kernel_paths.py",
         "tests/models/language/test_batching.py", "tests/models/language/test_attention.py"]


@dataclass
class Step:
    name: str
    out: str
    ok: bool
    status: str


def step(name: str, command: list[str], limit_s: float, env: dict[str, str] | None = None) -> Step:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=limit_s)
        ok, status = process.returncode == 0, f"exit {process.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its children too: none may keep the GPU
        out, _ = process.communicate()
        ok, status = False, f"timed out after {limit_s:.0f} s"
    print(out[-6000:], flush=True)
    print(f"=== {name}: {status} in {time.monotonic() - started:.0f} s", flush=True)
    return Step(name, out, ok, status)


def row(out: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with `first_cell`, or []."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    return []


def found(out: str, pattern: str) -> re.Match | None:
    return re.search(pattern, out, re.MULTILINE)


def number(text: str) -> float | None:
    match = re.search(r"[-+]?\d+(\.\d+)?", text)
    return float(match.group()) if match else None


def figure(s: Step, text: str) -> str:
    return text if s.ok else f"FAILED ({s.status}): {text}"


def pytest_summary(s: Step) -> str:
    """pytest's whole last line (passed, failed, skipped, errors), not just its first number."""
    last = found(s.out, r"^=* ?(\d+ (?:passed|failed|error).*?) in [\d.]+s")
    return figure(s, last.group(1) if last else "no summary")


def answer_rows(s: Step, counts: tuple[str, ...], targets: dict[str, str],
                weights: str = "float16") -> list[tuple[str, str, str]]:
    rows = []
    for n in counts:
        cells = row(s.out, n)
        text = (f"{cells[1]} aggregate, {cells[6]} decode-only, {cells[2]} per stream, TTFT p50 {cells[3]}"
                if len(cells) > 6 else "missing")
        rows.append((f"answers, {n} at once, {weights}", figure(s, text), targets.get(n, "")))
    graphs = found(s.out, r"^decode graphs: (.*)$")
    rows.append((f"CUDA graphs, {weights}", figure(s, graphs.group(1) if graphs else "missing"), "0 eager"))
    compiles = found(s.out, r"^Triton variants compiled: (.*)$")
    rows.append((f"Triton compiles, {weights}", figure(s, compiles.group(1) if compiles else "missing"), "0 after"))
    memory = found(s.out, r"^peak GPU memory: (.*)$")
    rows.append((f"answers' peak memory, {weights}", figure(s, memory.group(1) if memory else "n/a (CPU)"),
                 "fits the card"))
    return rows


def ingest_rows(s: Step) -> list[tuple[str, str, str]]:
    rows = []
    for line in s.out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 14 and cells[0].endswith(("1280x720", "3840x2160", "7680x4320")):
            per_hour = number(cells[2])
            text = f"{per_hour:.1f} s per hour, peak GPU {cells[12]} allocated, {cells[13]} reserved"
            rows.append((f"ingest {cells[0]}", figure(s, text if per_hour is not None else line),
                         "<= 30 s per hour (720p)" if "1280x720" in cells[0] else "fits in 8 GB"))
    return rows or [("ingest", figure(s, "missing"), "<= 30 s per hour (720p)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="the CPU at --layers 1, small runs (CI)")
    args = parser.parse_args()
    py = sys.executable
    if args.smoke:  # every step and parser, sized for a 2-core CPU
        counts, limits = ("1", "2"), (600, 600, 600, 900)
        small = ["--layers", "1", "--frames", "8", "--tokens", "4"]
        answers_cmd = [*small, "--concurrency", *counts]
        int8_cmd = [*answers_cmd, "--weights", "int8"]
        shared_cmd = ["--layers", "1", "--frames", "8", "--during-ingest", "--tokens", "16", "--ingest-frames", "16"]
        ingest_cmd = ["--layers", "1", "--minutes", "0.25", "--memory-minutes", "0.05", "--clip-seconds", "15", "3"]
        env = {}
    else:
        counts, limits = ("1", "16"), (100, 150, 90, 140)  # within 8 minutes in all
        answers_cmd = ["--concurrency", "1", "4", "16", "64"]
        int8_cmd = ["--weights", "int8", "--concurrency", *counts]
        shared_cmd = ["--during-ingest", "--tokens", "512"]
        ingest_cmd = ["--minutes", "10", "--memory-minutes", "0.25"]
        env = {"TRITON_INTERPRET": "0"}
    tests = step("GPU tests" if not args.smoke else "tests", [py, "-m", "pytest", "-q", *TESTS], limits[0], env)
    answers = step("answers", [py, "bench/answer.py", *answers_cmd], limits[1])
    # On the CPU the int8 layers run their CPU path: the interpreter would take minutes over the 7B's widths.
    int8 = step("answers, int8 weights", [py, "bench/answer.py", *int8_cmd], limits[1],
                {"TRITON_INTERPRET": "0"} if args.smoke else None)
    quick = args.quick and not args.smoke
    shared = None if quick else step("answers during ingest", [py, "bench/answer.py", *shared_cmd], limits[2])
    ingest = None if quick else step("ingest", [py, "bench/ingest.py", *ingest_cmd], limits[3])

    figures: list[tuple[str, str, str]] = [("tests", pytest_summary(tests), "all pass")]
    figures += answer_rows(answers, counts, {"1": ">= 150 tok/s per stream (7B)", "16": ">= 1500 tok/s aggregate"})
    figures += answer_rows(int8, counts, {"1": "above float16's"}, "int8 weights")
    if shared is not None:
        kept = row(shared.out, "answer tok/s"), row(shared.out, "ingest frames/s")
        figures.append(("an answer during an ingest", figure(shared, kept[0][3] if kept[0] else "missing"),
                        ">= 70% of alone"))
        figures.append(("an ingest during an answer", figure(shared, kept[1][3] if kept[1] else "missing"),
                        ">= 60% of alone"))
    if ingest is not None:
        figures += ingest_rows(ingest)
    print("\n| check | figure | target |\n|---|---|---|")
    for check, text, target in figures:
        print(f"| {check} | {text} | {target} |")
    failed = [s.name for s in (tests, answers, int8, shared, ingest) if s is not None and not s.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
