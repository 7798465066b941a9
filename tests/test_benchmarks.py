"""Benchmarks keep working: each runs on a small input and prints what it promises.

No timing is asserted here; the numbers are for people, read from a full run.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fetch_benchmark_runs_and_prints_its_ratios() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fetch_weights.py"),
            "--quick",
            "--repeat",
            "1",
            "--processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| store | tool | MB/s | % of store ceiling | CPU s/GB client | CPU s/GB store |" in out
    for store in ("s3rver x1", "s3rver x2 + nginx"):
        for tool in ("store ceiling", "llmflow fetch (verified)", "aws s3 sync"):
            assert f"| {store} | {tool}" in out
    assert "| moto (lists CRC64NVME) | llmflow fetch (verified, CRC) |" in out
    assert "client CPU of llmflow, s/GB:" in out
    assert "ratio llmflow / aws s3 sync:" in out
    assert "cache hit (8 files):" in out


def test_train_benchmark_runs_and_prints_its_ratio() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--steps", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio steps/train.py / Trainer:" in result.stdout
    assert "tokens/s" in result.stdout
