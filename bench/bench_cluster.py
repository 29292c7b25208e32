"""Past one machine: the local pool vs. Dask, and storage requests per output on S3.

Run it from the project root with the project's virtualenv (extras distributed, s3,
and moto[s3] + flask for the S3 emulator):

    python bench/bench_cluster.py                       # 120 images, 5 copies, 2 workers
    python bench/bench_cluster.py --images 400 --batch 1,4,16

On the same generated 640x480 JPEGs and the standard recipe (bench_run.py's), it
times, with the same number of worker processes:

* pool          ``run_recipe(workers=W)``: the local process pool, the default;
* local         ``run_recipe(cluster="local")``: a Dask LocalCluster started and
                closed by the run (its start-up is in the time);
* tcp           ``run_recipe(cluster="tcp://...")`` against a ``dask scheduler`` and
                ``dask worker --nworkers W`` already running (start-up not in the time),
                once per batch size (sources per Dask task).

Each prints the wall time and its overhead over the pool's. Then it runs the recipe
from S3 to S3 (moto's server, on 127.0.0.1) on the pool and counts the HTTP requests
the server answered, per output: requests, not seconds, since the emulator's latency is
not the cloud's. Targets: Dask overhead <= 10 % of the pool's wall time; <= 3 requests
per output. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import generate_inputs, write_recipe  # noqa: E402

OVERHEAD_TARGET = 0.10
REQUESTS_TARGET = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def timed(run, expected: int) -> float:
    started = time.perf_counter()
    report = run()
    seconds = time.perf_counter() - started
    if report.exit_code != 0 or report.written != expected:
        raise RuntimeError(f"run wrote {report.written} of {expected}: {report.failures[:3]}")
    return seconds


# --- S3 requests ---------------------------------------------------------------------

class CountingS3:
    """moto's S3 server behind a WSGI wrapper that counts requests by method."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.counts: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self._counting(app), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _counting(self, app):
        def counted(environ, start_response):
            kind = environ["REQUEST_METHOD"]
            if kind == "GET" and "list-type" in environ.get("QUERY_STRING", ""):
                kind = "LIST"
            with self.lock:
                self.counts[kind] += 1
            return app(environ, start_response)
        return counted

    def reset(self) -> collections.Counter:
        with self.lock:
            counts, self.counts = self.counts, collections.Counter()
        return counts

    def stop(self) -> None:
        self.server.shutdown()


def count_s3_requests(recipe: Path, inputs: Path, workers: int, expected: int) -> None:
    import s3fs

    from augcli import run_recipe

    server = CountingS3()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.port}")
    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bench")
        fs.put(f"{inputs}/", "bench/raw/", recursive=True)
        server.reset()
        seconds = timed(lambda: run_recipe(recipe, input="s3://bench/raw",
                                           output="s3://bench/out", workers=workers), expected)
        counts = server.reset()
        total = sum(counts.values())
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
        print(f"\nS3 -> S3 on the pool ({workers} workers, {seconds:.1f} s against the "
              f"emulator): {total} requests for {expected} outputs = "
              f"{total / expected:.2f} per output ({detail})")
        verdict = "met" if total / expected <= REQUESTS_TARGET else "NOT met"
        print(f"target <= {REQUESTS_TARGET:.0f} requests per output: {verdict}")
    finally:
        server.stop()


# --- executors ----------------------------------------------------------------------------

def compare_executors(recipe: Path, work: Path, workers: int, batches: list, expected: int,
                      repeats: int) -> None:
    from augcli import executors, run_recipe

    def best(run) -> float:
        times = []
        for _ in range(repeats):
            shutil.rmtree(work / "out", ignore_errors=True)
            times.append(timed(run, expected))
        return min(times)

    pool = best(lambda: run_recipe(recipe, output=work / "out", workers=workers))
    rows = [("pool", pool)]
    rows.append(("local (start-up included)",
                 best(lambda: run_recipe(recipe, output=work / "out", cluster="local",
                                         workers=workers))))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([*dask, "distributed.cli.dask_scheduler", "--host",
                                  "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)
    worker = None
    try:
        wait_for_port(port)
        worker = subprocess.Popen([*dask, "distributed.cli.dask_worker", address, "--nworkers",
                                   str(workers), "--nthreads", "1", "--no-dashboard"], **quiet)
        import distributed
        with distributed.Client(address) as client:
            client.wait_for_workers(workers, timeout=60)
        for batch in batches:
            executors.SOURCES_PER_TASK = batch
            rows.append((f"tcp, {batch} source(s) per task",
                         best(lambda: run_recipe(recipe, output=work / "out",
                                                 cluster=address))))
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(20)
    print(f"\n{expected} outputs, {workers} worker processes, best of {repeats}:")
    print(f"{'executor':<32} {'seconds':>8} {'outputs/s':>10} {'overhead':>9}")
    for name, seconds in rows:
        overhead = seconds / pool - 1
        print(f"{name:<32} {seconds:8.2f} {expected / seconds:10.1f} {overhead:+9.1%}")
    tcp = [seconds for name, seconds in rows if name.startswith("tcp")]
    verdict = "met" if min(tcp) / pool - 1 <= OVERHEAD_TARGET else "NOT met"
    print(f"target: Dask (tcp) overhead <= {OVERHEAD_TARGET:.0%} of the pool's wall time: "
          f"{verdict}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120, help="source images (default 120)")
    parser.add_argument("--copies", type=int, default=5, help="outputs per image (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batch", default="1,4",
                        help="sources per Dask task to try, comma-separated (default 1,4)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row, best kept")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="augcli-bench-cluster-"))
    try:
        inputs = work / "in"
        generate_inputs(inputs, args.images)
        recipe = work / "recipe.yaml"
        write_recipe(recipe, inputs, work / "out", args.copies)
        expected = args.images * args.copies
        compare_executors(recipe, work, args.workers,
                          [int(b) for b in args.batch.split(",")], expected, args.repeats)
        count_s3_requests(recipe, inputs, args.workers, expected)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
