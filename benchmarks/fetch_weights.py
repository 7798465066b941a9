"""Benchmark: fetching a model-shaped object set from S3 (s3rver) into a local cache.

Runs, in the same run and against the same server and files:
  * llmflow's fetch (`llmflow fetch`, the code of the fetch-weights step),
  * `aws s3 sync` with the AWS CLI's defaults (the baseline),
  * `cp -r` of the same files on local disk (the ceiling: no network, no server),
and prints MB/s for each, the ratios, and the time of a cache hit. It also prints the CPU
seconds per GB each client and the S3 server spent: on a small machine where server and
client share the cores, CPU is what bounds throughput, and llmflow spends some on verifying
every byte's MD5 against the ETag, which `aws s3 sync` does not do.

    .venv/bin/python benchmarks/fetch_weights.py            # 20 x 100 MB + 2 GiB + small files
    .venv/bin/python benchmarks/fetch_weights.py --quick    # a small set, to check it runs

Goals (issue): >= 1.5x `aws s3 sync`, >= 80% of `cp -r`, cache hit on the 21-file model < 100 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.weights.fetch import fetch_model  # noqa: E402
from workflows.local.s3 import LocalS3  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024


def make_model(folder: Path, shards: int, shard_bytes: int, big_bytes: int) -> int:
    """Write a model-shaped file set; returns its total size. Content varies per MiB."""
    folder.mkdir(parents=True)
    block = os.urandom(MiB)
    sizes = {f"model-{i + 1:05d}-of-{shards:05d}.safetensors": shard_bytes for i in range(shards)}
    if big_bytes:
        sizes["consolidated.safetensors"] = big_bytes
    for name, size in sizes.items():
        with open(folder / name, "wb") as f:
            for n, offset in enumerate(range(0, size, MiB)):
                f.write(
                    (n.to_bytes(8, "little") + name.encode())[:64]
                    + block[64 : min(MiB, size - offset)]
                )
    for name in ["config.json", "generation_config.json", "tokenizer_config.json"]:
        (folder / name).write_text('{"benchmark": true}\n' * 10)
    (folder / "tokenizer.json").write_bytes(os.urandom(2 * MiB))
    return sum(p.stat().st_size for p in folder.iterdir())


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small file set (a few MB)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool; best is kept")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="llmflow-bench-"))
    shards, shard_bytes, big = (
        (3, 4 * MiB, 8 * MiB) if args.quick else (20, 100 * MB, 2 * 1024 * MiB)
    )
    src = work / "src"
    shutil.rmtree(work, ignore_errors=True)
    total = make_model(src, shards, shard_bytes, big)
    files = len(list(src.iterdir()))
    print(f"model: {files} files, {total / MB:.0f} MB")

    with LocalS3(work / "s3", buckets=("bench",)) as s3:
        client = s3.client()
        from boto3.s3.transfer import TransferConfig

        single_put = TransferConfig(multipart_threshold=5 * 1024 * MiB)
        for path in src.iterdir():
            client.upload_file(str(path), "bench", f"model/{path.name}", Config=single_put)
        env = {**os.environ, **s3.env()}
        os.environ.update(s3.env())
        llmflow = [str(Path(sys.executable).parent / "llmflow"), "fetch", "s3://bench/model"]
        aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or "aws"

        def run_llmflow(dest: Path) -> None:
            subprocess.run(
                [*llmflow, "--cache", str(dest), "--name", "m"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def run_aws(dest: Path) -> None:
            subprocess.run(
                [
                    aws,
                    "s3",
                    "sync",
                    "s3://bench/model",
                    str(dest),
                    "--endpoint-url",
                    s3.endpoint,
                    "--only-show-errors",
                ],
                env=env,
                check=True,
            )

        def run_cp(dest: Path) -> None:
            subprocess.run(["cp", "-r", str(src), str(dest)], check=True)

        results: dict[str, float] = {}
        server_pid = s3.pid
        for name, fn in [
            ("aws s3 sync", run_aws),
            ("llmflow fetch", run_llmflow),
            ("cp -r (local)", run_cp),
        ]:
            best = float("inf")
            client_cpu = server_cpu = 0.0
            for i in range(args.repeat):
                dest = work / f"dest-{name.split()[0]}-{i}"
                cpu0, srv0 = children_cpu(), process_cpu(server_pid)
                best = min(best, timed(lambda fn=fn, dest=dest: fn(dest)))
                client_cpu += children_cpu() - cpu0
                server_cpu += process_cpu(server_pid) - srv0
                shutil.rmtree(dest)
            results[name] = total / best / MB
            gb = args.repeat * total / 1e9
            print(
                f"{name:15} {results[name]:8.0f} MB/s  ({total / MB / results[name]:5.1f} s)  "
                f"CPU s/GB: client {client_cpu / gb:.2f}, S3 server {server_cpu / gb:.2f}"
            )

        cache = work / "cache"
        fetch_model("s3://bench/model", cache, "m", progress=False)
        hits = [
            timed(lambda: fetch_model("s3://bench/model", cache, "m", progress=False))
            for _ in range(7)
        ]
    shutil.rmtree(work, ignore_errors=True)

    vs_aws = results["llmflow fetch"] / results["aws s3 sync"]
    vs_cp = results["llmflow fetch"] / results["cp -r (local)"]
    print(f"ratio llmflow / aws s3 sync: {vs_aws:.2f}x   (goal >= 1.5x)")
    print(f"ratio llmflow / cp -r:       {vs_cp:.0%}   (goal >= 80%)")
    print(
        f"cache hit ({files} files):     {statistics.median(hits) * 1000:.0f} ms median  "
        "(goal < 100 ms)"
    )


if __name__ == "__main__":
    main()
