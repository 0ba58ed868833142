"""Serving a catalogue: 200 fast-style and 20 Pix2Pix exports behind one deployment of two
replicas, each caching a bounded number of models (``@serve.multiplexed``).

Measured over HTTP, with the helpers of :mod:`benchmarks.serve`:

- **loaded**: requests to models already in a replica's cache against the single-model path
  (the same app shape over a catalogue of one model), interleaved rounds, 4 clients; target:
  p50 and p99 within 1.2x.
- **cold**: one client requesting models no replica holds: each request loads its export
  (read, checked against its manifest, built, onnxruntime session made).
- **zipf** and **uniform**: 4 clients drawing model names from Zipf(1.1) over the 220 names
  (a few popular models, a long tail) and uniformly (every request likely a miss: the thrashing
  case): latency and throughput.
- **memory**: the replicas' resident memory before the traffic and at its peak while the 200
  models rotate through the caches, against the cache's budget (``replica_memory_mb``).

The exports are copies of one fast-style network (width 8, one residual block) and one Pix2Pix
U-Net (64 px, ngf 8) under different names: what is measured is serving many models, not their
pictures, and copying keeps the catalogue's creation to seconds. Images are 64x64.

    python -m benchmarks.serve_catalogue [--quick] [--out bench-results]
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.serve import http_path, load, routed, test_image

STYLES, TRANSLATORS = 200, 20
STYLE = ["fast_style.width=8", "fast_style.residual_blocks=1"]
PIX2PIX = ["data.size=64", "pix2pix.ngf=8", "pix2pix.ndf=8"]
SIDE, CLIENTS, ZIPF = 64, 4, 1.1
REPLICAS = {"min_replicas": 2, "max_replicas": 2}
# What each replica may spend on cached models: 24 models of the largest export here (the
# Pix2Pix, 3.5 MB + 3 MB of overhead: genart.serve.settings.cache_size) per replica, 48 in all,
# so the 220 names cannot all stay loaded.
BUDGET_MB = 160


def settings(quick: bool) -> dict:
    """Requests per measurement (``loaded``: per path and round)."""
    if quick:
        return {"rounds": 3, "loaded": 24, "cold": 8, "zipf": 160, "uniform": 120}
    return {"rounds": 6, "loaded": 40, "cold": 20, "zipf": 480, "uniform": 360}


def build_catalogue(root: Path) -> tuple[Path, Path, list[str]]:
    """The benchmark's catalogue and a one-model catalogue; returns both and the route of
    every model of the big one (``style/<name>`` or ``translate/<name>``)."""
    from genart.serve.demo import export_initialised

    big, single, checkpoints = root / "cat", root / "single", root / "checkpoints"
    style = export_initialised("fast_style", STYLE, big / "style-000", checkpoints=checkpoints)
    pix = export_initialised("pix2pix", PIX2PIX, big / "pix-00", checkpoints=checkpoints)
    for i in range(1, STYLES):
        shutil.copytree(style, big / f"style-{i:03d}")
    for i in range(1, TRANSLATORS):
        shutil.copytree(pix, big / f"pix-{i:02d}")
    shutil.copytree(style, single / "style-000")
    routes = [f"style/style-{i:03d}" for i in range(STYLES)]
    return big, single, routes + [f"translate/pix-{i:02d}" for i in range(TRANSLATORS)]


@contextlib.contextmanager
def served(big: Path, single: Path) -> Iterator[str]:
    """Both catalogues served by their own app (two ImageModels replicas each); yields the
    server's URL (apps at ``/cat`` and ``/single``)."""
    import ray
    from ray import serve

    from genart.serve.builder import build
    from genart.serve.ray_settings import RAY_SYSTEM_CONFIG, free_ports, use_local_haproxy

    use_local_haproxy()
    ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False,
             _system_config=RAY_SYSTEM_CONFIG)  # fmt: skip
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    image = {"autoscaling_config": REPLICAS, "ray_actor_options": {"num_cpus": 0.5},
             "max_ongoing_requests": 16, "max_queued_requests": -1}  # fmt: skip
    options = {"ImageModels": image, "Ingress": {"ray_actor_options": {"num_cpus": 0.25}},
               "LatentModels": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
                                "ray_actor_options": {"num_cpus": 0.1}}}  # fmt: skip
    try:
        for name, folder in (("cat", big), ("single", single)):
            catalogue = {"uri": str(folder), "replica_memory_mb": BUDGET_MB}
            quiet = {"enable_access_log": False}
            serve.run(build({"catalogue": catalogue}, options), name=name,
                      route_prefix=f"/{name}", logging_config=quiet)  # fmt: skip
            routed(f"{url}/{name}")
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def replica_rss_mb(app: str) -> list[float]:
    """Resident memory (MB) of each ImageModels replica process of the application ``app``."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "ServeReplica" in command and f"{app}:ImageModels" in command.replace("#", ":"):
            with contextlib.suppress(psutil.Error):
                found.append(round(process.memory_info().rss / 2**20, 1))
    return sorted(found)


def row(name: str, times: list[float], wall: float | None = None) -> dict:
    """One table row: requests, p50 and p99 (ms) and, given the wall time, throughput."""
    ms = sorted(1000 * t for t in times)
    return {"traffic": name, "requests": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
            "throughput_rps": round(len(ms) / wall, 2) if wall else None}  # fmt: skip


def drawn(url: str, routes: list[str], names: Iterator[int]) -> Callable[[bytes], None]:
    """A client call that POSTs to the route of the next drawn index (thread-safe draws)."""
    import threading

    lock, calls = threading.Lock(), {route: http_path(f"{url}/{route}") for route in routes}

    def call(data: bytes) -> None:
        with lock:
            route = routes[next(names)]
        calls[route](data)

    return call


def run(out_dir: Path, quick: bool) -> dict:
    """Measure; print the table and write ``serve_catalogue.json`` in ``out_dir``."""
    from benchmarks.common import print_table, write_json

    s = settings(quick)
    data = test_image(SIDE)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        big, single, routes = build_catalogue(Path(tmp))
        print(f"catalogue of {len(routes)} exports in {time.perf_counter() - start:.0f} s")
        with served(big, single) as url:
            rows, memory = [], {"before_mb": replica_rss_mb("cat")}
            # Loaded: four models, each requested until both replicas hold it.
            hot = routes[:2] + routes[STYLES : STYLES + 2]
            loaded = drawn(url + "/cat", hot, iter(int(i) for i in rng.integers(0, 4, 10**6)))
            one = http_path(f"{url}/single/style/style-000")
            load(loaded, data, CLIENTS, 8 * CLIENTS)
            load(one, data, CLIENTS, 8 * CLIENTS)
            times = {"loaded": [], "single": []}
            for _ in range(s["rounds"]):
                for name, call in (("loaded", loaded), ("single", one)):
                    times[name] += load(call, data, CLIENTS, s["loaded"])[0]
            rows += [row("single model (today's path)", times["single"]),
                     row("catalogue, model loaded", times["loaded"])]  # fmt: skip
            # Cold: models no replica has held yet, one at a time.
            cold = routes[10 : 10 + s["cold"]]
            cold_times = []
            for route in cold:
                cold_times += load(http_path(f"{url}/cat/{route}"), data, 1, 1)[0]
            rows.append(row("catalogue, cold load (1 client)", cold_times))
            # Zipf and uniform traffic over every name.
            order = rng.permutation(len(routes))  # which model each Zipf rank is
            ranks = np.minimum(rng.zipf(ZIPF, s["zipf"]), len(routes)) - 1
            zipf = drawn(url + "/cat", routes, iter(int(order[r]) for r in ranks))
            rows.append(row(f"catalogue, Zipf({ZIPF})", *load(zipf, data, CLIENTS, s["zipf"])))
            uniform_draws = iter(int(i) for i in rng.integers(0, len(routes), s["uniform"]))
            uniform = drawn(url + "/cat", routes, uniform_draws)
            peak = watch_peak(lambda: load(uniform, data, CLIENTS, s["uniform"]))
            rows.append(row("catalogue, uniform (thrashing)", *peak.pop("result")))
            memory |= peak | {"after_mb": replica_rss_mb("cat"), "budget_mb": BUDGET_MB,
                              "models_per_replica": cache_size(BUDGET_MB, big)}  # fmt: skip
    print_table(rows)
    derived = summarise(rows, memory)
    print("\n".join(f"{k}: {v}" for k, v in derived.items()))
    result = {"quick": quick, "settings": s, "catalogue": {"styles": STYLES,
              "translators": TRANSLATORS, "replicas": 2, "image_side": SIDE,
              "clients": CLIENTS}, "memory": memory, "rows": rows, "derived": derived}  # fmt: skip
    write_json("serve_catalogue", result, out_dir)
    return result


def watch_peak(work: Callable[[], object]) -> dict:
    """``work()``'s result and the peak replica memory (per replica, MB) sampled meanwhile."""
    import threading

    peak: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            now = replica_rss_mb("cat")
            peak[:] = [max(a, b) for a, b in zip(peak, now)] if len(peak) == len(now) else now

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return {"result": result, "peak_mb": peak}


def summarise(rows: list[dict], memory: dict) -> dict:
    """Loaded against single-model latency (target <= 1.2x) and memory growth per replica
    against the budget."""
    by = {r["traffic"]: r for r in rows}
    single, loaded = by["single model (today's path)"], by["catalogue, model loaded"]
    before = memory["before_mb"]
    growth = [round(p - b, 1) for p, b in zip(memory["peak_mb"], before)]
    return {
        "loaded_vs_single_p50": round(loaded["p50_ms"] / single["p50_ms"], 2),
        "loaded_vs_single_p99": round(loaded["p99_ms"] / single["p99_ms"], 2),
        "loaded_vs_single_target": 1.2,
        "cold_load_p50_ms": by["catalogue, cold load (1 client)"]["p50_ms"],
        "uniform_throughput_rps": by["catalogue, uniform (thrashing)"]["throughput_rps"],
        "zipf_throughput_rps": by[f"catalogue, Zipf({ZIPF})"]["throughput_rps"],
        "replica_memory_growth_mb": growth,
        "replica_memory_budget_mb": BUDGET_MB,
        "models_per_replica": memory["models_per_replica"],
    }


def cache_size(budget_mb: int, catalogue: Path) -> int:
    """How many models each replica caches, as the replicas compute it."""
    from genart.catalogue import Catalogue
    from genart.serve.settings import CatalogueSettings
    from genart.serve.settings import cache_size as size

    largest = max(e.size for e in Catalogue(str(catalogue)).entries())
    return size(CatalogueSettings(uri=str(catalogue), replica_memory_mb=budget_mb), largest)


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
