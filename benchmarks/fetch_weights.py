"""Benchmark: fetching a model-shaped object set from S3 into a local cache, and what bounds it.

In the same run, against the same stores and files:
  * the store's ceiling: the object set read with N parallel ranged GETs whose bytes are
    discarded (no disk, no checksum), which is as fast as any client can go on this store;
  * llmflow's fetch (`llmflow fetch`, the code of the fetch-weights step, verification on);
  * `aws s3 sync` with the AWS CLI's defaults (the baseline; it verifies nothing);
  * `cp -r` of the same files on local disk (no network, no server);
for two stores: one s3rver process, and a pool of one s3rver per core behind nginx
(`workflows/local/s3_pool.py`), which stops being the bottleneck on a machine with cores to
spare. Each row gives MB/s, CPU seconds per GB of the client and of the store, and the share of
the store's ceiling.

Client CPU is then broken down: receiving (the ceiling's reader), hashing (MD5 and CRC64-NVME
measured on this CPU) and the rest (writing, bookkeeping). A last row fetches from moto's
server, whose objects carry S3's CRC64-NVME (as AWS objects do since December 2024), to show the
client's CPU when the store offers a cheaper checksum than the ETag's MD5.

    .venv/bin/python benchmarks/fetch_weights.py            # 20 x 100 MB + 2 GiB + small files
    .venv/bin/python benchmarks/fetch_weights.py --before 0707247   # also an older llmflow
    .venv/bin/python benchmarks/fetch_weights.py --quick    # a small set, to check it runs

`--before REV` adds a row for llmflow's fetch as it was at git revision REV (run from a
worktree of this repository), so "less CPU than before" is measured on the same machine in
the same run.

Goals (issue): >= 90% of the store's ceiling with verification on; >= 1.5x `aws s3 sync` where
the store is not the bottleneck; client CPU per GB at most half of the client's before CRC
verification (`--before`); a cache hit on the 25-file model < 100 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.weights.fetch import fetch_model  # noqa: E402
from workflows.local.s3 import LocalS3, free_port  # noqa: E402
from workflows.local.s3_pool import LocalS3Pool  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024


@dataclass
class Row:
    """One measured tool on one store."""

    store: str
    tool: str
    mb_s: float
    client_cpu: float  # s/GB
    store_cpu: float | None  # s/GB


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


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hash_costs() -> dict[str, float]:
    """CPU seconds per GB of each checksum on this CPU, over 256 MiB in 8 MiB blocks."""
    from awscrt import checksums

    data = memoryview(os.urandom(8 * MiB))
    costs = {}
    for name, fn in [
        ("MD5", lambda b: hashlib.md5(b).digest()),
        ("CRC64-NVME", lambda b: checksums.crc64nvme(b)),
    ]:
        started = time.process_time()
        for _ in range(32):
            fn(data)
        costs[name] = (time.process_time() - started) / (32 * 8 * MiB / 1e9)
    return costs


def ceiling(endpoint_env: dict[str, str], bucket: str, prefix: str, concurrency: int) -> None:
    """Read every object under the prefix with parallel 8 MiB ranged GETs, discarding bytes."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_env["AWS_ENDPOINT_URL"],
        aws_access_key_id=endpoint_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=endpoint_env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    objects = client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ranges = []
    for obj in objects:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": obj["Key"]}
        )
        ranges += [
            (url, off, min(8 * MiB, obj["Size"] - off)) for off in range(0, obj["Size"], 8 * MiB)
        ]
    local: dict[int, tuple[http.client.HTTPConnection, memoryview]] = {}

    def get(item: tuple[str, int, int]) -> None:
        url, offset, length = item
        parts = urlsplit(url)
        import threading

        key = threading.get_ident()
        if key not in local:
            local[key] = (
                http.client.HTTPConnection(parts.netloc, timeout=60),
                memoryview(bytearray(4 * MiB)),
            )
        conn, buffer = local[key]
        conn.request(
            "GET",
            f"{parts.path}?{parts.query}",
            headers={"Range": f"bytes={offset}-{offset + length - 1}"},
        )
        response = conn.getresponse()
        assert response.status == 206, response.status
        while response.readinto(buffer):
            pass

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, ranges))
    for conn, _ in local.values():
        conn.close()


@contextmanager
def moto_server(data_root: Path) -> Iterator[str]:
    """moto's S3 server on a free port; yields its endpoint."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=data_root,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def measure(
    repeat: int,
    total: int,
    run: Callable[[Path], None],
    dest_root: Path,
    store_pids: Callable[[], list[int]],
    in_process: bool = False,
) -> tuple[float, float, float]:
    """(best MB/s, client CPU s/GB, store CPU s/GB) over `repeat` runs."""
    best = float("inf")
    client = server = 0.0
    for i in range(repeat):
        dest = dest_root / f"run-{i}"
        pids = store_pids()
        cpu0 = self_cpu() if in_process else children_cpu()
        srv0 = sum(process_cpu(p) for p in pids)
        started = time.perf_counter()
        run(dest)
        best = min(best, time.perf_counter() - started)
        client += (self_cpu() if in_process else children_cpu()) - cpu0
        server += sum(process_cpu(p) for p in pids) - srv0
        shutil.rmtree(dest, ignore_errors=True)
    gb = repeat * total / 1e9
    return total / best / MB, client / gb, server / gb


def bench_store(
    name: str,
    store: Any,
    src: Path,
    total: int,
    work: Path,
    repeat: int,
    concurrency: int,
    before: tuple[str, Path] | None = None,
) -> list[Row]:
    """Upload the set to `store`, then measure the ceiling, llmflow and aws on it."""
    from boto3.s3.transfer import TransferConfig

    client = store.client()
    single_put = TransferConfig(multipart_threshold=5 * 1024 * MiB)
    for path in sorted(src.iterdir()):
        client.upload_file(str(path), "bench", f"model/{path.name}", Config=single_put)
    env = {**os.environ, **store.env()}
    bin_dir = Path(sys.executable).parent
    aws = shutil.which("aws", path=str(bin_dir)) or "aws"

    def run_llmflow(dest: Path) -> None:
        subprocess.run(
            [str(bin_dir / "llmflow"), "fetch", "s3://bench/model", "--cache", str(dest),
             "--name", "m", "--concurrency", str(concurrency)],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def run_aws(dest: Path) -> None:
        subprocess.run(
            [aws, "s3", "sync", "s3://bench/model", str(dest), "--endpoint-url",
             store.endpoint, "--only-show-errors"],
            env=env, check=True,
        )  # fmt: skip

    def run_ceiling(dest: Path) -> None:
        ceiling(store.env(), "bench", "model/", concurrency)

    def run_before(dest: Path) -> None:
        assert before is not None
        subprocess.run(
            [sys.executable, "-c", "from workflows.cli import main; main()", "fetch",
             "s3://bench/model", "--cache", str(dest), "--name", "m",
             "--concurrency", str(concurrency)],
            env={**env, "PYTHONPATH": str(before[1])}, cwd=before[1], check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    pids = lambda: store.pids if hasattr(store, "pids") else [store.pid]  # noqa: E731
    rows = []
    tools = [
        ("store ceiling (ranged GETs, discarded)", run_ceiling, True),
        ("llmflow fetch (verified)", run_llmflow, False),
        ("aws s3 sync", run_aws, False),
    ]
    if before is not None:
        tools.insert(2, (f"llmflow fetch at {before[0]} (verified)", run_before, False))
    for tool, fn, in_process in tools:
        mb_s, c_cpu, s_cpu = measure(repeat, total, fn, work / "dest", pids, in_process)
        rows.append(Row(name, tool, mb_s, c_cpu, s_cpu))
        cpu = f"client {c_cpu:.2f}  store {s_cpu:.2f} CPU-s/GB"
        print(f"  {name:22} {tool:40} {mb_s:7.0f} MB/s  {cpu}", flush=True)
    return rows


def bench_crc(work: Path, shards: int, shard_bytes: int, repeat: int) -> Row:
    """llmflow against moto's server, whose objects list CRC64-NVME: the CRC path's client CPU."""
    import boto3

    src = work / "crc-src"
    total = make_model(src, shards, shard_bytes, 0)
    with moto_server(work) as endpoint:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        }
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, aws_access_key_id="bench",
            aws_secret_access_key="bench", region_name="us-east-1",
        )  # fmt: skip
        client.create_bucket(Bucket="bench")
        for path in sorted(src.iterdir()):
            client.put_object(
                Bucket="bench", Key=f"crc/{path.name}", Body=path.read_bytes(),
                ChecksumAlgorithm="CRC64NVME",
            )  # fmt: skip
        llmflow = str(Path(sys.executable).parent / "llmflow")

        def run(dest: Path) -> None:
            subprocess.run(
                [llmflow, "fetch", "s3://bench/crc", "--cache", str(dest), "--name", "m"],
                env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        mb_s, c_cpu, _ = measure(repeat, total, run, work / "dest", lambda: [])
    shutil.rmtree(src, ignore_errors=True)
    return Row("moto (lists CRC64NVME)", "llmflow fetch (verified, CRC)", mb_s, c_cpu, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small file set (a few MB)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool; best MB/s is kept")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel ranged GETs")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="s3rver processes in the pooled store")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--before", metavar="REV", help="also run llmflow's fetch at git REV")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="llmflow-bench-"))
    shards, shard_bytes, big = (
        (3, 4 * MiB, 8 * MiB) if args.quick else (20, 100 * MB, 2 * 1024 * MiB)
    )
    src = work / "src"
    shutil.rmtree(work, ignore_errors=True)
    total = make_model(src, shards, shard_bytes, big)
    files = len(list(src.iterdir()))
    print(f"machine: {os.cpu_count()} cores; model: {files} files, {total / MB:.0f} MB")
    costs = hash_costs()
    print("hashing on this CPU: " + ", ".join(f"{k} {v:.2f} CPU-s/GB" for k, v in costs.items()))

    before = None
    if args.before:
        tree = work / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before],
            check=True, capture_output=True,
        )  # fmt: skip
        before = (args.before, tree)
    rows: list[Row] = []
    with LocalS3(work / "s3-one", buckets=("bench",)) as one:
        rows += bench_store(
            "s3rver x1", one, src, total, work, args.repeat, args.concurrency, before
        )
        os.environ.update(one.env())
        cache = work / "cache"
        fetch_model("s3://bench/model", cache, "m", progress=False)
        hits = []
        for _ in range(7):
            started = time.perf_counter()
            fetch_model("s3://bench/model", cache, "m", progress=False)
            hits.append(time.perf_counter() - started)
    shutil.rmtree(work / "s3-one", ignore_errors=True)
    pool_name = f"s3rver x{args.processes} + nginx"
    with LocalS3Pool(work / "s3-pool", buckets=("bench",), processes=args.processes) as pool:
        rows += bench_store(pool_name, pool, src, total, work, args.repeat, args.concurrency)
    shutil.rmtree(work / "s3-pool", ignore_errors=True)

    def run_cp(dest: Path) -> None:
        subprocess.run(["cp", "-r", str(src), str(dest)], check=True)

    mb_s, c_cpu, _ = measure(args.repeat, total, run_cp, work / "dest", lambda: [])
    rows.append(Row("local disk", "cp -r", mb_s, c_cpu, None))
    crc_shards, crc_bytes = (3, 4 * MiB) if args.quick else (20, 100 * MB)
    rows.append(bench_crc(work, crc_shards, crc_bytes, args.repeat))
    if before is not None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before[1])])
    shutil.rmtree(work, ignore_errors=True)

    ceilings = {r.store: r.mb_s for r in rows if r.tool.startswith("store ceiling")}
    print()
    print("| store | tool | MB/s | % of store ceiling | CPU s/GB client | CPU s/GB store |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        share = f"{r.mb_s / ceilings[r.store]:.0%}" if r.store in ceilings else "-"
        store_cpu = f"{r.store_cpu:.2f}" if r.store_cpu is not None else "-"
        print(
            f"| {r.store} | {r.tool} | {r.mb_s:.0f} | {share} | {r.client_cpu:.2f} | {store_cpu} |"
        )
    print()

    def find(store: str, tool: str) -> Row:
        return next(r for r in rows if r.store == store and r.tool.startswith(tool))

    for store in ceilings:
        ours, aws = find(store, "llmflow"), find(store, "aws")
        print(
            f"{store}: llmflow / store ceiling {ours.mb_s / ceilings[store]:.0%} (goal >= 90%), "
            f"llmflow / aws s3 sync {ours.mb_s / aws.mb_s:.2f}x (goal >= 1.5x where the store "
            "is not the bottleneck)"
        )
    md5_row, crc_row = find("s3rver x1", "llmflow fetch (verified)"), rows[-1]
    receive = find("s3rver x1", "store ceiling").client_cpu
    old = next((r for r in rows if r.tool.startswith("llmflow fetch at ")), None)
    baseline = f"{old.client_cpu:.2f} at {args.before}" if old else "not run (--before REV)"
    goal = f", goal <= {old.client_cpu / 2:.2f}" if old else ""
    print(
        f"client CPU of llmflow, s/GB: {md5_row.client_cpu:.2f} verifying MD5 ETags, "
        f"{crc_row.client_cpu:.2f} verifying CRC64-NVME (before: {baseline}{goal}); of the "
        f"MD5 path, receiving ~{receive:.2f} (the ceiling's reader), hashing {costs['MD5']:.2f} "
        f"(CRC64-NVME would be {costs['CRC64-NVME']:.2f}), the rest "
        f"~{max(0.0, md5_row.client_cpu - receive - costs['MD5']):.2f} (writing, bookkeeping)"
    )
    print(f"ratio llmflow / aws s3 sync: {md5_row.mb_s / find('s3rver x1', 'aws').mb_s:.2f}x")
    print(f"ratio llmflow / cp -r:       {md5_row.mb_s / find('local disk', 'cp').mb_s:.0%}")
    hit_ms = statistics.median(hits) * 1000
    print(f"cache hit ({files} files):     {hit_ms:.0f} ms median  (goal < 100 ms)")


if __name__ == "__main__":
    main()
