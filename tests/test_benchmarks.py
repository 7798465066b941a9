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


def test_mirror_benchmark_runs_and_prints_its_table_and_ratios(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "mirror_latency.py"),
            "--quick",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    out = result.stdout
    assert (
        "| mode | requests | errors | TTFT p50 ms | TTFT p95 ms | total p50 ms | total p95 ms |"
        in out
    )
    for mode in ("no mirror", "100% mirrored", "no mirror, client copies"):
        assert f"| {mode} | 16 | 0 |" in out
    assert "ratio mirrored / no mirror: TTFT p50 " in out
    assert "ratio mirrored / client copies: TTFT p50 " in out
    assert "relay: forwarded " in out and "dropped 0" in out
    assert "'abort': 0.0" in out  # copies are read to their end
