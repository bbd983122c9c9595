"""Latency of the served recommender and batch scoring throughput.

Needs a workspace with a champion ``territory-recommender`` (run ``make demo``
first). Starts the real ``mlflow models serve`` on a free loopback port,
sends bounded requests of 1 and 1,000 units, and times in-process batch
scoring of every unit.

    .venv/bin/python benchmarks/serving_latency.py --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from territory.features.spatial import build_adjacency
from territory.models.tracking import load_champion, start_server
from territory.pipelines.cli import prepare_environment
from territory.pipelines.config import load_config
from territory.pipelines.publish import setup_tracking
from territory.pipelines.stages import load_inputs, market_table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, body: bytes) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--requests-1", type=int, default=200)
    parser.add_argument("--requests-1000", type=int, default=30)
    args = parser.parse_args()

    config = load_config(args.config)
    prepare_environment(Path(config.workspace))
    uri = setup_tracking(config)
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, projected_crs=config.data.projected_crs)
    model = load_champion()
    columns = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    rows = market_table(config, inputs, graph).reset_index(names="unit_id")[columns]

    # "What-if" rows change a feature, so their drivers cannot come from the cache.
    what_if = rows.assign(population=rows["population"] * 1.1)
    throughput = {}
    for name, frame in (("current features", rows), ("what-if features", what_if)):
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            model.predict(frame)
            timings.append(time.perf_counter() - start)
        throughput[name] = len(frame) / float(np.median(timings))

    port = _free_port()
    server = start_server(uri, port=port)
    results = {}
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the scoring server did not start") from None
                time.sleep(0.5)
        rng = np.random.default_rng(0)
        cases = [(1, args.requests_1, rows, "current"), (1000, args.requests_1000, rows, "current"),
                 (1, args.requests_1, what_if, "what-if"),
                 (1000, args.requests_1000, what_if, "what-if")]
        for size, n_requests, frame, kind in cases:
            latencies = []
            for i in range(n_requests + 3):
                sample = frame.iloc[rng.choice(len(frame), size, replace=False)]
                body = json.dumps({"dataframe_split": sample.to_dict(orient="split")}).encode()
                elapsed = _post(port, body)
                if i >= 3:  # warm-up requests are not counted
                    latencies.append(elapsed * 1000)
            results[(size, kind)] = (np.percentile(latencies, 50),
                                     np.percentile(latencies, 99), n_requests)
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"Serving latency ({platform.node()}, {time.strftime('%Y-%m-%d')})")
    for col in ("measure", "value"):
        table.add_column(col)
    for (size, kind), (p50, p99, n) in results.items():
        table.add_row(f"{size} unit(s) per request, {kind} features: p50 / p99 ({n} requests)",
                      f"{p50:.1f} ms / {p99:.1f} ms")
    for name, rate in throughput.items():
        table.add_row(f"batch scoring, {len(rows):,} units in process, {name} (median of 3)",
                      f"{rate:,.0f} rows/s")
    Console().print(table)


if __name__ == "__main__":
    main()
