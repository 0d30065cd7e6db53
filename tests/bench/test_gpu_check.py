"""bench/gpu_check.py: honest about failures, and every step and parser run on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gpu_check import Step, pytest_summary, step

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_test_run_reads_failed_with_its_whole_summary() -> None:
    out = "....F\n========== 1 failed, 77 passed, 3 skipped in 20.5s ==========\n"
    assert pytest_summary(Step("tests", out, False, "exit 1")) == "FAILED (exit 1): 1 failed, 77 passed, 3 skipped"
    assert pytest_summary(Step("tests", "12 passed in 1.0s\n", True, "exit 0")) == "12 passed"


def test_a_step_that_times_out_has_its_whole_group_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    child = f"import subprocess, sys; p = subprocess.Popen(['sleep', '60']); open({str(pid_file)!r}, 'w').write(str(p.pid)); p.wait()"
    result = step("hang", [sys.executable, "-c", child], limit_s=2)
    assert not result.ok and "timed out" in result.status
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break  # the grandchild is gone with its group
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split()[2] == "Z":  # dead, waiting for its reaper
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the timed-out step's child still runs")


def test_the_smoke_run_fills_every_row() -> None:
    """The whole check on the CPU at --layers 1: the tests, the released-shape answer bench
    (bench/answer.py --layers 1, float and int8 weights), answers during an ingest, the ingest bench, and the table."""
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1500)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    table = out[out.rindex("| check | figure | target |"):]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # below the header
    checks = [line.split("|")[1].strip() for line in rows]
    assert checks[:11] == ["tests"] + [row.format(weights) for weights in ("float16", "int8 weights") for row in (
        "answers, 1 at once, {}", "answers, 2 at once, {}", "CUDA graphs, {}", "Triton compiles, {}",
        "answers' peak memory, {}")]
    assert "an answer during an ingest" in checks and "an ingest during an answer" in checks
    assert sum(c.startswith("ingest ") for c in checks) == 3  # 720p, 4K, 8K
    assert not any("missing" in row or "FAILED" in row for row in rows), table
    assert "Qwen2-7B, SigLIP so400m, DINOv2-giant shapes, 1 layer(s) a stack" in out
    assert "LLM weights int8" in out
    assert "Triton variants compiled: 0 at warm-up, 0 after" in out
