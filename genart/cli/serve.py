"""``genart serve``: run the HTTP application on Ray Serve and print how to call it.

Without ``--config`` it serves the embedded default: the demo catalogue under ``--demo-dir``
(created on first use, see ``genart.serve.demo``) on 127.0.0.1:8000. With ``--config FILE`` it
deploys a Serve config file such as serve_config.yaml, deployment options included, as
``serve run FILE`` would. It joins the cluster RAY_ADDRESS names or one ``ray start`` runs on
this machine, else starts a private local Ray that ends with it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

IMPORT_PATH = "genart.serve.builder:build_app"
DEFAULT_DEMO_DIR = "runs/serve-demo"
PROGRESS_EVERY_S = 10  # while the application starts, say what it waits for this often
ROUTE_TIMEOUT_S = 30  # Serve runs the application, but its /healthz does not answer from here


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the models over HTTP with Ray Serve")
    p.add_argument("--config", help="Serve config YAML (e.g. serve_config.yaml); default: demo")
    p.add_argument("--demo-dir", default=DEFAULT_DEMO_DIR,
                   help=f"where the demo catalogue lives (default {DEFAULT_DEMO_DIR})")  # fmt: skip
    p.add_argument("--prepare", action="store_true",
                   help="only create the demo catalogue that serve_config.yaml names")  # fmt: skip
    p.add_argument("--host", help="HTTP host (default: the config's, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default: the config's, else 8000)")
    p.add_argument("--no-block", action="store_true",
                   help="return once deployed (it stays up on a cluster you started)")  # fmt: skip
    p.set_defaults(func=serve_command)


def default_config(demo_dir: str) -> dict:
    """The embedded default: one genart application over the demo catalogue, on localhost; the
    application serve_config.yaml describes (a unit test compares them)."""
    from genart.serve import demo

    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 300},
        "applications": [{"name": "genart", "route_prefix": "/", "import_path": IMPORT_PATH,
                          "args": demo.prepare(demo_dir)}],
    }  # fmt: skip


def load_config(path: str):
    """A Serve config file as ``ServeDeploySchema``, checked to hold only genart applications."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(Path(path).read_text())
    unknown = unknown_keys(ServeDeploySchema, raw)
    if unknown:
        raise SystemExit(f"genart: unknown keys in {path}: {', '.join(unknown)}")
    schema = ServeDeploySchema.model_validate(raw)
    for app in schema.applications:
        if app.import_path != IMPORT_PATH:
            raise SystemExit(
                f"genart: application '{app.name}' imports {app.import_path}; genart serve runs "
                f"{IMPORT_PATH} applications only (use `serve run {path}` for others)"
            )
        if app.runtime_env:
            raise SystemExit(f"genart: runtime_env of '{app.name}': use `serve run {path}`")
    return schema


def unknown_keys(model, raw, where: str = "") -> list[str]:
    """Paths of the keys in ``raw`` that the pydantic schema ``model`` (nested schemas too) does
    not define. Ray's Serve schemas ignore such keys, so a typo (``route_prefx``) would deploy
    with the default in silence; ``serve run`` behaves so, ``genart serve`` refuses."""
    if not isinstance(raw, dict):
        return []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    fields |= dict(model.model_fields)
    found = []
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            found.append(path)
            continue
        listed = isinstance(value, list)
        for inner in _schemas(fields[key].annotation):
            for i, item in enumerate(value if listed else [value]):
                found += unknown_keys(inner, item, f"{path}[{i}]" if listed else path)
    return found


def _schemas(annotation) -> list:
    """The pydantic model classes inside a type annotation (``Optional[X]``, ``list[X]``, ...)."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _schemas(arg)]


def absolute_paths(args: dict) -> dict:
    """The app's args with relative local paths (models, the Gatys jobs folder) made absolute,
    from the current directory.

    Replicas resolve relative paths against the directory Ray was started in, which need not be
    this one; a missing path is an error here, with what to do about it.
    """
    from genart import storage
    from genart.serve.settings import AppSettings

    settings = AppSettings.model_validate(args)

    def resolve(path: str) -> str:
        if storage.is_remote(path):
            return path
        local = Path(path).expanduser().resolve()
        if not local.exists():
            raise FileNotFoundError(
                f"{path} does not exist: export a run there (genart export RUN --out {path}, "
                f"or --catalogue CAT --name NAME for a catalogue), or create the demo catalogue "
                f"serve_config.yaml names: genart serve --prepare"
            )
        return str(local)

    if settings.catalogue:
        settings.catalogue.uri = resolve(settings.catalogue.uri)
    if settings.adain:
        settings.adain.styles = {name: resolve(p) for name, p in settings.adain.styles.items()}
    if settings.gatys and settings.gatys.jobs_dir:  # created by the job store if missing
        settings.gatys.jobs_dir = storage.absolute(settings.gatys.jobs_dir)
    return settings.model_dump()


def connect() -> None:
    """Join the cluster RAY_ADDRESS names, else one ``ray start`` runs on this machine, else
    start a private local Ray with genart's serving settings (``genart.serve.ray_settings``),
    listening on loopback only (:mod:`genart.compat.loopback`); then start genart's console
    (:mod:`genart.console`).

    Never ``address="auto"``: that joins any Ray it finds on the machine, another genart
    command's private one included, and the app would die with that command.
    """
    import ray

    from genart import console
    from genart.compat.isolation import enable_token_auth, private_temp_dir, recorded_cluster
    from genart.compat.loopback import start_on_loopback
    from genart.serve.ray_settings import RAY_SYSTEM_CONFIG, use_local_haproxy

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or recorded_cluster()
    if address:
        console.start(ray.init(address=address, **console.ray_init_args()), relay=False)
        return
    path = "HAProxy" if use_local_haproxy() else "Ray's Python proxy"
    enable_token_auth()
    context = ray.init(address="local", _system_config=start_on_loopback(RAY_SYSTEM_CONFIG),
                       _temp_dir=private_temp_dir(), **console.ray_init_args())  # fmt: skip
    print(f"started a private local Ray; HTTP enters Serve through {path} (docs/serving.md)")
    console.start(context, relay=False)  # no worker of genart serve prints progress


def deploy(schema) -> list[str]:
    """Start Serve with the config's HTTP options and submit each application; returns their
    URLs at once, while the replicas start (:func:`wait_until_answering` waits for them).

    Each application's ``deployments`` entries become ``Deployment.options`` overrides, as
    ``serve run``/``serve deploy`` apply them.
    """
    from ray import serve

    from genart.serve.builder import build
    from genart.serve.settings import TOKEN_ENV

    serve.start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    token = os.environ.get(TOKEN_ENV) or None
    urls = []
    for app in schema.applications:
        options = {d.name: d.model_dump(exclude_unset=True, exclude={"name"})
                   for d in app.deployments}  # fmt: skip
        application = build(absolute_paths(app.args), options, token)
        target = serve.RunTarget(application, name=app.name, route_prefix=app.route_prefix,
                                 logging_config=app.logging_config)  # fmt: skip
        # Not waiting for every replica: the ingress answers long before the slowest model
        # deployment is up, and requests for that one wait in its queue meanwhile.
        serve.run_many([target], wait_for_applications_running=False)
        prefix = (app.route_prefix or "/").rstrip("/")
        urls.append(f"http://{schema.http_options.host}:{schema.http_options.port}{prefix}")
    return urls


class DeployFailed(RuntimeError):
    """Serve gave up deploying an application (a replica's constructor keeps failing)."""


def starting(name: str) -> list[str]:
    """The deployments of application ``name`` with no replica running yet (``["all"]`` before
    Serve knows the application); raises :class:`DeployFailed` with Serve's reason."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus, ReplicaState

    app = serve.status().applications.get(name)
    if app is None:
        return ["all"]
    if app.status == ApplicationStatus.DEPLOY_FAILED:
        raise DeployFailed(f"application {name} failed to deploy: {app.message}")
    # A replica running is what counts: an autoscaled deployment reports UPSCALING, not
    # HEALTHY, until Serve's next look at its load.
    return sorted(d for d, status in app.deployments.items()
                  if not status.replica_states.get(ReplicaState.RUNNING))  # fmt: skip


def wait_until_answering(url: str, name: str) -> bool:
    """Wait until application ``name`` answers ``url``/healthz over HTTP, saying every
    ``PROGRESS_EVERY_S`` which deployments are still starting; False if Serve runs them all
    but no answer comes within ``ROUTE_TIMEOUT_S`` (this machine cannot reach Serve's port)."""
    started = time.monotonic()
    running_since = None
    while not wait_until_routed(url, timeout_s=PROGRESS_EVERY_S):
        pending, now = starting(name), time.monotonic()
        if not pending:
            running_since = running_since or now
            if now - running_since >= ROUTE_TIMEOUT_S:
                return False
            continue
        running_since = None
        print(
            f"genart: application {name} is starting ({now - started:.0f} s); waiting for "
            f"{', '.join(pending)}",
            flush=True,
        )
    return True


def wait_until_routed(url: str, timeout_s: float = ROUTE_TIMEOUT_S) -> bool:
    """Poll ``url``/healthz until the application answers it over HTTP; False on timeout.

    The ingress runs before its route is known to the HTTP proxy (~0.1 s here), and a request
    in between would reach another application or get 404.
    """
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def curl_examples(url: str, args: dict) -> list[str]:
    """Ready-to-paste curl commands for what an application serves (its catalogue's models as
    they are when the app starts)."""
    curl = "curl"
    if os.environ.get("GENART_API_TOKEN"):
        curl += ' -H "Authorization: Bearer $GENART_API_TOKEN"'
    json_post = f"{curl} -H 'Content-Type: application/json'"
    lines = [f"{curl} {url}/models"]
    families = catalogue_families(args.get("catalogue"))
    sample = example_route(args, families, "dcgan", "sample")
    if sample:
        lines.append(f"""{json_post} -d '{{"n": 16, "seed": 0}}' {url}{sample} -o grid.png""")
    routes = {"fast_style": ("style", "styled"), "pix2pix": ("translate", "translated"),
              "cyclegan": ("translate", "translated")}  # fmt: skip
    lines += [f"{curl} --data-binary @photo.jpg {url}/{routes[f][0]}/{n} -o {routes[f][1]}.png"
              for n, f in families if f in routes]  # fmt: skip
    if args.get("dream") is not None:
        lines.append(f"{curl} --data-binary @photo.jpg '{url}/dream?iterations=5' -o dream.png")
    if args.get("gatys") is not None:
        contents = '"$(base64 -w0 photo.jpg)" "$(base64 -w0 style.jpg)"'
        body = f"""printf '{{"content": "%s", "styles": ["%s"]}}' {contents}"""
        lines.append(f"{body} | {json_post} --data-binary @- {url}/gatys/jobs  # poll status_url")
    adain = args.get("adain")
    stylize = example_route(args, families, "adain", "stylize")
    if adain is not None and stylize:
        named = sorted(adain.get("styles") or {})
        style = f'"style_name": "{named[0]}"' if named else '"style": "%s"'
        images = '"$(base64 -w0 photo.jpg)"' + ("" if named else ' "$(base64 -w0 style.jpg)"')
        body = f"""printf '{{"content": "%s", {style}, "alpha": 0.8}}' {images}"""
        lines.append(f"{body} | {json_post} --data-binary @- {url}{stylize} -o adain.png")
    return lines


def example_route(args: dict, families: list[tuple[str, str]], family: str, verb: str):
    """``/family/verb`` when the catalogue names a default model of ``family``, else the route
    of its first model of that family (``/family/NAME/verb``); None without one."""
    if (args.get("catalogue") or {}).get(family):
        return f"/{family}/{verb}"
    return next((f"/{family}/{n}/{verb}" for n, f in families if f == family), None)


def catalogue_families(settings: dict | None) -> list[tuple[str, str]]:
    """(name, family) of each usable model of the catalogue ``settings`` name (none: [])."""
    if not settings:
        return []
    from genart.catalogue import Catalogue

    return [(e.name, e.family) for e in Catalogue(settings["uri"]).entries() if e.usable]


def serve_command(args) -> int:
    if args.prepare:
        from genart.serve import demo

        demo.prepare(args.demo_dir)
        then = "genart serve" + ("" if args.demo_dir == DEFAULT_DEMO_DIR
                                 else f" --demo-dir {args.demo_dir}")  # fmt: skip
        print(f"demo catalogue ({args.demo_dir}/models) ready in {args.demo_dir}; now: {then}")
        return 0
    from ray.serve.schema import ServeDeploySchema

    if args.config:
        schema = load_config(args.config)
    else:
        schema = ServeDeploySchema.model_validate(default_config(args.demo_dir))
    if args.host:
        schema.http_options.host = args.host
    if args.port:
        schema.http_options.port = args.port
    connect()
    urls = deploy(schema)
    names = [app.name for app in schema.applications]
    if not args.no_block:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        for url, app in zip(urls, schema.applications):
            announce(url, app)
        if not args.no_block:
            print("\nCtrl-C stops it.", flush=True)
            watch(names)
    except KeyboardInterrupt:
        stop(names)
    except DeployFailed as err:
        print(f"genart: error: {err}", file=sys.stderr)
        stop(names)
        return 1
    return 0


def announce(url: str, app) -> None:
    """Once ``app`` answers over HTTP (see :func:`wait_until_answering`), print how to call it."""
    from genart.serve.app import Ingress

    if not wait_until_answering(url, app.name):
        print(f"genart: warning: {url}/healthz did not answer from here; the app is "
              "deployed, but check that this machine can reach Serve's HTTP port")  # fmt: skip
    print(f"\ngenart is serving at {url}/ (the playground; API docs at {url}/docs). Try:")
    # Flushed: the examples are what the user waits for, in a log file too.
    print("\n".join("  " + line for line in curl_examples(url, app.args)), flush=True)
    # The ingress answered; Serve's status may not say so yet.
    if pending := [d for d in starting(app.name) if d != Ingress.name]:
        print(f"Still starting: {', '.join(pending)}; requests for them wait until they run.",
              flush=True)  # fmt: skip


def watch(names: list[str]) -> None:
    """Block until Ctrl-C or SIGTERM (as KeyboardInterrupt); meanwhile say once each
    application runs every deployment."""
    waiting = {name for name in names if starting(name)}
    while True:
        for name in sorted(waiting):
            if not starting(name):
                print(f"genart: application {name} runs every deployment", flush=True)
                waiting.discard(name)
        time.sleep(2 if waiting else 3600)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop(names: list[str]) -> None:
    """Delete these applications (and only these), saying so.

    Other applications on a shared cluster keep running; `serve run` killed by SIGTERM, by
    contrast, leaves its applications behind.
    """
    from ray import serve

    print(f"\ngenart: stopping application {', '.join(names)} ...", flush=True)
    for name in names:
        serve.delete(name)
    print("genart serve stopped", flush=True)
