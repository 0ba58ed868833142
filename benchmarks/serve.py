"""Fast-style serving: latency and throughput over HTTP against calling the model in-process.

The work is the same on every path: decode a PNG with the server's validation, stylise it with
Johnson et al.'s network (width 32, 5 residual blocks, random weights), encode the result as
PNG. ``direct`` does it in this process; ``http`` POSTs the image to the genart Serve app
(ingress + one ImageModels replica; the style is the one model of its catalogue) with batching
off (``max_batch_size`` 1) or on (16, 5 ms window). Both apps run side by side, so the three
paths are timed in interleaved rounds and load from other processes on a shared machine hits
them alike.

Scenarios: 256x256 images with 1 and 16 concurrent clients (threads, each sending its next
request when its last one returns; ``direct`` with 16 clients is 16 threads calling the net),
and 16x16 images with 1 client, where the model costs ~1 ms and what remains is the fixed cost
of serving. The replica gets one logical CPU, so Ray gives it one torch thread; the direct call
runs one torch thread too.

A third app is the floor under any app of this shape: a FastAPI ingress that passes the body
through one more deployment and back, with no decoding and no model ("echo app").

Overload: a fourth app with the queue caps and batching genart ships (the deployments'
defaults, as serve_config.yaml sets them; one replica each, so runs compare) gets 64 clients
for a fixed time, each retrying at once when refused (clients that ignore Retry-After: the
worst case). Its row has the successful requests per second, the 503s per second and the p50
of the successes; the clients run on the same machine and their retries cost CPU too.

Derived: serving overhead = p50(http) - p50(direct) at 1 client; batching speed-up =
throughput with batching / without at 16 clients; Serve's floor = p50(echo app) at 16x16;
overload goodput = successful req/s at 64 clients / req/s of batching on at 16 clients.
Each HTTP row also has the CPU time per request of every Serve process together (proxy or
HAProxy, ingress and model replicas): on a shared machine it varies far less than latency.

The local Ray it starts serves over the HAProxy data path, as ``genart serve`` does
(``genart.serve.ray_settings``); ``RAY_SERVE_ENABLE_HA_PROXY=0`` measures Ray's Python proxy.

    python -m benchmarks.serve [--quick] [--out bench-results]
"""

# No ``from __future__ import annotations`` here: the echo app's FastAPI route is rebuilt in
# its replica, which must see real annotation objects, not names to resolve.
import contextlib
import io
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import requests
import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from PIL import Image

BATCHING = {
    "off": {"max_batch_size": 1},
    "on": {"max_batch_size": 16, "batch_wait_timeout_s": 0.005},
}
FLOOR = "http, echo app (Serve's floor)"
OVERLOAD = "http, shipped queue caps, 64 clients retrying at once"
OVERLOAD_CLIENTS = 64
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1}
# The DCGAN deployment every catalogue app has, unused here: one small replica.
IDLE = {"autoscaling_config": ONE_REPLICA, "ray_actor_options": {"num_cpus": 0.1}}
SIDE = 256  # of the images in the 1- and 16-client scenarios (--tiny: 32)
FLOOR_SIDE = 16  # of the images where the model costs ~1 ms


def scenarios(side: int) -> tuple[tuple[int, int], ...]:
    """(image side, concurrent clients) of each measured scenario."""
    return (side, 1), (side, 16), (FLOOR_SIDE, 1)


def settings(quick: bool, tiny: bool = False) -> dict:
    """Interleaved rounds per scenario and requests per path in each round."""
    if tiny:  # a dry run of the code (make gpu-check DEVICE=cpu)
        return {"side": 32, "rounds": {1: 1, 16: 1}, "per_round": {1: 2, 16: 16},
                "tiny_per_round": 2, "overload_s": 1}  # fmt: skip
    if quick:
        return {"side": SIDE, "rounds": {1: 3, 16: 2}, "per_round": {1: 3, 16: 16},
                "tiny_per_round": 10, "overload_s": 15}  # fmt: skip
    return {"side": SIDE, "rounds": {1: 10, 16: 4}, "per_round": {1: 5, 16: 32},
            "tiny_per_round": 30, "overload_s": 45}  # fmt: skip


def test_image(side: int) -> bytes:
    """A PNG with structure and noise (roughly photo-like to encode and decode)."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side))
    base = np.stack([x, y, (x + y) / 2], -1) * 200 + rng.normal(0, 20, (side, side, 3))
    buffer = io.BytesIO()
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def run_threads(client: Callable[[], None], count: int) -> float:
    """``client`` in ``count`` threads at once; the wall time until the last one ended."""
    threads = [threading.Thread(target=client) for _ in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def load(call: Callable[[bytes], None], data: bytes, clients: int, total: int):
    """Latencies (s) of ``total`` calls from ``clients`` threads, and the wall time they took."""
    latencies: list[float] = []
    remaining = iter(range(total))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            start = time.perf_counter()
            call(data)
            with lock:
                latencies.append(time.perf_counter() - start)

    return latencies, run_threads(client, clients)


def hammer(url: str, data: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads POSTing ``data`` to ``url`` for ``seconds``, each sending its next
    request as soon as the last is answered, a 503 included: the overload row."""
    ok: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        session = requests.Session()
        while time.perf_counter() < stop:
            start = time.perf_counter()
            code = session.post(url, data=data, timeout=600).status_code
            with lock:
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    ok.append(time.perf_counter() - start)

    wall = run_threads(client, clients)
    others = {code: n for code, n in codes.items() if code not in (200, 503)}
    return {"requests": len(ok), "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "throughput_rps": round(len(ok) / wall, 2),
            "refused_503_per_s": round(codes.get(503, 0) / wall, 1),
            "other_statuses": others or None}  # fmt: skip


def direct_path(export: str) -> Callable[[bytes], None]:
    """The server's work for one request, in this process."""
    from genart.images import encode_png
    from genart.pipelines.style import FastStylePipeline
    from genart.serve.validation import Limits, decode_image

    pipe = FastStylePipeline.from_export(export)

    def call(data: bytes) -> None:
        (styled,) = pipe([decode_image(data, Limits())])
        encode_png(styled)

    return call


def http_path(url: str) -> Callable[[bytes], None]:
    """One POST of the image per call, over a kept-alive connection per client thread."""
    local = threading.local()

    def call(data: bytes) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        local.session.post(url, data=data, timeout=600).raise_for_status()

    return call


@contextlib.contextmanager
def served(catalogue: str) -> Iterator[dict[str, str]]:
    """One app per batching mode on a free port, each serving the catalogue whose one model is
    ``bench``; yields {mode: URL of its style endpoint}."""
    import ray
    from ray import serve

    from genart.serve.builder import build
    from genart.serve.ray_settings import RAY_SYSTEM_CONFIG, free_ports, use_local_haproxy

    started = not ray.is_initialized()
    if started:
        use_local_haproxy()
        # Logical CPUs, enough for the four apps' replicas side by side (they are timed one
        # at a time; idle replicas cost next to nothing).
        ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False,
                 _system_config=RAY_SYSTEM_CONFIG)  # fmt: skip
    (port,) = free_ports(1)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    urls = {}
    for mode, user_config in BATCHING.items():
        # One replica, no queue limit: measure the service, not the admission control. On a
        # GPU machine the two apps' replicas share the GPU.
        actor = {"num_cpus": 1} | ({"num_gpus": 0.5} if torch.cuda.is_available() else {})
        style = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
                 "max_ongoing_requests": 32, "max_queued_requests": -1,
                 "ray_actor_options": actor, "user_config": user_config}  # fmt: skip
        options = {"ImageModels": style, "Ingress": {"ray_actor_options": {"num_cpus": 0.5}},
                   "LatentModels": IDLE}  # fmt: skip
        serve.run(build({"catalogue": {"uri": catalogue}}, options), name=f"batching-{mode}",
                  route_prefix=f"/{mode}", logging_config={"enable_access_log": False})  # fmt: skip
        urls[mode] = f"http://127.0.0.1:{port}/{mode}/style/bench"
        routed(f"http://127.0.0.1:{port}/{mode}")
    # The overload app: every option as shipped but the replica counts.
    shipped = {name: {"autoscaling_config": ONE_REPLICA} for name in ("Ingress", "ImageModels")}
    serve.run(build({"catalogue": {"uri": catalogue}}, shipped | {"LatentModels": IDLE}),
              name="overload",
              route_prefix="/overload", logging_config={"enable_access_log": False})  # fmt: skip
    urls["overload"] = f"http://127.0.0.1:{port}/overload/style/bench"
    routed(f"http://127.0.0.1:{port}/overload")
    serve.run(echo_app(), name="floor", route_prefix="/floor",
              logging_config={"enable_access_log": False})  # fmt: skip
    urls["floor"] = f"http://127.0.0.1:{port}/floor/"
    routed(f"http://127.0.0.1:{port}/floor")
    try:
        yield urls
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()


def routed(url: str) -> None:
    """Wait until the app at ``url`` answers over HTTP: the measurements must not see 404s."""
    from genart.cli.serve import wait_until_routed

    if not wait_until_routed(url):
        raise RuntimeError(f"{url}/healthz never answered")


def echo_app():
    """Serve's own cost, the floor under any app of this shape: a FastAPI ingress that passes
    the body through one more deployment and returns it (no decoding, no model)."""
    from ray import serve

    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.5})
    class Echo:
        async def run(self, data: bytes) -> bytes:
            return data

    @serve.deployment(ray_actor_options={"num_cpus": 0.5})
    @serve.ingress(api)
    class EchoIngress:
        def __init__(self, echo):
            self.echo = echo

        @api.get("/healthz")
        async def healthz(self) -> dict:
            return {"status": "ok"}

        @api.post("/")
        async def echo(self, request: Request) -> Response:
            body = await self.echo.run.remote(await request.body())
            return Response(body, media_type="image/png")

    return EchoIngress.bind(Echo.bind())


def serve_cpu_seconds() -> float:
    """CPU time used so far by every Serve process on this machine (proxy, HAProxy, replicas).

    Other tenants' load stretches latencies but hardly the CPU a request costs, so this shows
    where serving spends its time even on a busy shared machine.
    """
    import psutil

    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if any(name in command for name in ("ServeReplica", "ProxyActor", "haproxy")):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def measure(paths: dict[str, Callable], data: bytes, clients: int, rounds: int, per_round: int):
    """Interleaved rounds of every path; one table row per path. For HTTP paths the row also
    has the CPU time per request of all Serve processes together (idle apps' share included)."""
    for call in paths.values():  # warm-up: connections, allocator, oneDNN kernel choice
        load(call, data, clients, clients)
    latencies = {name: [] for name in paths}
    walls = dict.fromkeys(paths, 0.0)
    cpu = dict.fromkeys(paths, 0.0)
    for _ in range(rounds):
        for name, call in paths.items():
            before = serve_cpu_seconds()
            times, wall = load(call, data, clients, per_round)
            cpu[name] += serve_cpu_seconds() - before
            latencies[name] += times
            walls[name] += wall
    rows = []
    for name, times in latencies.items():
        ms = sorted(1000 * t for t in times)
        serve_cpu = round(1000 * cpu[name] / len(ms), 2) if name.startswith("http") else None
        rows.append({"path": name, "requests": len(ms), "p50_ms": round(statistics.median(ms), 1),
                     "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
                     "throughput_rps": round(len(ms) / walls[name], 2),
                     "serve_cpu_ms_per_request": serve_cpu})  # fmt: skip
    return rows


def run(out_dir: Path, quick: bool, tiny: bool = False) -> dict:
    """Measure every scenario; print the table and write ``serve.json`` in ``out_dir``."""
    from benchmarks.common import print_table, write_json
    from genart.serve.demo import export_initialised
    from genart.serve.ray_settings import SWITCH

    s = settings(quick, tiny)
    torch.set_num_threads(1)  # as the replica (one logical CPU -> OMP_NUM_THREADS=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export = str(export_initialised("fast_style", [], Path(tmp) / "cat" / "bench",
                                        checkpoints=Path(tmp) / "checkpoints"))  # fmt: skip
        with served(str(Path(tmp) / "cat")) as urls:
            paths = {"direct": direct_path(export)}
            paths |= {f"http, batching {mode}": http_path(urls[mode]) for mode in BATCHING}
            paths[FLOOR] = http_path(urls["floor"])
            for side, clients in scenarios(s["side"]):
                per_round = s["tiny_per_round"] if side == FLOOR_SIDE else s["per_round"][clients]
                scenario = measure(
                    paths, test_image(side), clients, s["rounds"][clients], per_round
                )
                rows += [{"image": f"{side}x{side}", "clients": clients, **row} for row in scenario]
                print_table(rows[-len(paths) :])
                print(flush=True)
            data = test_image(s["side"])
            hammer(urls["overload"], data, OVERLOAD_CLIENTS, 3)  # warm-up
            overload = hammer(urls["overload"], data, OVERLOAD_CLIENTS, s["overload_s"])
            rows.append({"image": f"{s['side']}x{s['side']}", "clients": OVERLOAD_CLIENTS,
                         "path": OVERLOAD, **overload})  # fmt: skip
            print_table(rows[-1:])
            print(flush=True)
    print_table(rows)
    derived = summarise(rows, s["side"])
    print("\n".join(f"{k}: {v}" for k, v in derived.items()))
    data_path = "HAProxy" if os.environ.get(SWITCH) == "1" else "Python proxy"
    print(f"Serve's HTTP data path: {data_path}")
    result = {"quick": quick, "tiny": tiny, "settings": s, "data_path": data_path, "rows": rows,
              "derived": derived}  # fmt: skip
    write_json("serve", result, out_dir)
    return result


def summarise(rows: list[dict], side: int = SIDE) -> dict:
    """Serving overhead at 1 client and the batching speed-up at 16, beside their targets
    (the figures named 256 are of ``side`` px images)."""
    big = f"{side}x{side}"

    def get(image: str, clients: int, path: str, key: str) -> float:
        match = (image, clients, path)
        return next(r[key] for r in rows if (r["image"], r["clients"], r["path"]) == match)

    def overhead(image: str, mode: str) -> float:
        http = get(image, 1, f"http, batching {mode}", "p50_ms")
        return round(http - get(image, 1, "direct", "p50_ms"), 1)

    speedup = get(big, 16, "http, batching on", "throughput_rps") / get(
        big, 16, "http, batching off", "throughput_rps"
    )
    capacity = get(big, 16, "http, batching on", "throughput_rps")
    overload = get(big, OVERLOAD_CLIENTS, OVERLOAD, "throughput_rps")
    return {
        "overhead_p50_ms_256_batching_off": overhead(big, "off"),
        "overhead_p50_ms_256_batching_on": overhead(big, "on"),
        "overhead_p50_ms_16px_batching_off": overhead("16x16", "off"),
        "serve_floor_p50_ms_16px": get("16x16", 1, FLOOR, "p50_ms"),
        "serve_floor_cpu_ms_per_request_16px": get("16x16", 1, FLOOR, "serve_cpu_ms_per_request"),
        "serve_cpu_ms_per_request_16px_batching_off": get(
            "16x16", 1, "http, batching off", "serve_cpu_ms_per_request"
        ),
        "overhead_target_ms": 3,
        "batching_speedup_256_16_clients": round(speedup, 2),
        "batching_speedup_target": 2,
        "overload_ok_rps_64_clients": overload,
        "overload_503_per_s_64_clients": get(big, OVERLOAD_CLIENTS, OVERLOAD, "refused_503_per_s"),
        "overload_goodput_vs_16_clients": round(overload / capacity, 2),
    }


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
