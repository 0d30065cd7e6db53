"""One command for whoever has a GPU: the GPU-only tests, then the answer and ingest benches
at the released shapes, and one table with the targets beside the figures.

    python bench/gpu_check.py              # about 8 minutes on one H100/H200
    python bench/gpu_check.py --quick      # the tests and the answer bench only

Each step runs in a process of its own (its output streams through), with a time limit, so
one that fails or hangs still leaves the others' figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(name: str, command: list[str], limit_s: float, env: dict[str, str] | None = None) -> str:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit_s,
                              env={**os.environ, **(env or {})})
        out, status = done.stdout + done.stderr, f"exit {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        out, status = (exc.stdout or b"").decode() + (exc.stderr or b"").decode(), f"timed out after {limit_s:.0f} s"
    print(out[-6000:], flush=True)
    print(f"=== {name}: {status} in {time.monotonic() - started:.0f} s", flush=True)
    return out


def row(out: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with `first_cell`, or []."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    return []


def number(text: str) -> float | None:
    found = re.search(r"[-+]?\d+(\.\d+)?", text)
    return float(found.group()) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    tests = step("GPU tests", [py, "-m", "pytest", "-q", "-x", "tests/kernels", "tests/models/test_preprocess.py",
                               "tests/models/test_kernel_paths.py"], 240, {"TRITON_INTERPRET": "0"})
    answers = step("answers", [py, "bench/answer.py", "--concurrency", "1", "4", "16", "64"], 240)
    shared = "" if args.quick else step("answers during ingest", [py, "bench/answer.py", "--during-ingest",
                                                                  "--tokens", "512"], 150)
    ingest = "" if args.quick else step("ingest", [py, "bench/ingest.py", "--minutes", "10",
                                                   "--memory-minutes", "1"], 300)

    figures: list[tuple[str, str, str]] = []
    summary = re.search(r"(\d+) passed.*", tests)
    figures.append(("GPU tests", summary.group() if summary else "see above", "all pass"))
    for n, target in (("1", ">= 150 tok/s per stream (7B)"), ("16", ">= 1500 tok/s aggregate")):
        cells = row(answers, n)
        figures.append((f"answers, {n} at once", f"{cells[1]} aggregate, {cells[2]} per stream, TTFT p50 {cells[3]}"
                        if cells else "missing", target))
    kept = row(shared, "answer tok/s"), row(shared, "ingest frames/s")
    figures.append(("an answer during an ingest", kept[0][3] if kept[0] else "missing", ">= 70% of alone"))
    figures.append(("an ingest during an answer", kept[1][3] if kept[1] else "missing", ">= 60% of alone"))
    for line in ingest.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0].endswith(("1280x720", "3840x2160", "7680x4320")):
            per_hour = number(cells[2])
            figures.append((f"ingest {cells[0]}", f"{per_hour:.1f} s per hour, peak GPU {cells[12]}"
                            if per_hour is not None else line, "<= 30 s per hour (720p)"
                            if "1280x720" in cells[0] else "fits in 8 GB"))
    print("\n| check | figure | target |\n|---|---|---|")
    for check, figure, target in figures:
        print(f"| {check} | {figure} | {target} |")


if __name__ == "__main__":
    main()
