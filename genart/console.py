"""What genart prints: its own progress lines, warnings and errors, and one line saying where
Ray's logs are. Ray's own output only with ``genart --verbose`` (or ``GENART_VERBOSE=1``).

Ray's output is hidden where it starts: worker and actor output stays in the session's log
files (``log_to_driver=False``), Ray's loggers in genart's own process print warnings and
errors only (:func:`ray_init_args`, :func:`start`), and Ray's words that genart says in its own
(:data:`RAY_CHATTER`) are dropped, from those loggers and from the messages the raylet pushes
to the driver (:mod:`genart.compat.notices`). Settings that Ray's processes read once,
when they start, are set by :func:`configure` before Ray starts, never over what the user set.
(Ray's token authentication notice: ``genart.compat.isolation.enable_token_auth``.)

Training progress is printed by rank 0 of a Ray Train run, inside a worker whose output is now
hidden: :func:`emit` there hands the line to a small actor in the job's namespace, which the
driver started with :func:`start`, and a thread of the driver prints what it holds, in order.
Where no driver started one (a Train run under a foreign driver, or no Ray at all), ``emit``
writes to stdout as before. On a terminal, progress lines share one line that is redrawn in
place.

Why not tqdm or rich for the bars: they would replace only the terminal drawing
(:class:`Display`, :func:`bar`; a few dozen lines), not the relay from Ray workers, which
neither has (Ray's ``tqdm_ray`` rides on worker output reaching the driver, which genart
hides). And off a terminal they do not write a log's plain periodic lines: tqdm writes every
update into one line joined by carriage returns (or nothing, with ``disable=None``), rich only
the finished bar.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import threading
from collections.abc import MutableMapping

VERBOSE_ENV = "GENART_VERBOSE"
ACTOR_NAME = "genart-console"
POLL_S = 0.25  # how often the driver prints what workers emitted
EMIT_TIMEOUT_S = 10.0  # a worker waits this long for the console before it prints the line itself
BAR_WIDTH = 20

# Read once by each process that imports Ray Data: its progress bars would be hidden anyway,
# and in this process they warn that tqdm is missing.
QUIET_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
# Ray's console messages a genart user has no use for, or that genart says in its own words;
# dropped unless verbose (the raylet's own log keeps its warnings).
RAY_CHATTER = (
    # The raylet counting the worker processes it started: trials and their Ray Data tasks
    # start many at once, and nothing in genart's flags is the cause or the cure.
    "worker processes have been started on node",
    # Tune's advice on an interrupted sweep: genart's report says "continue with --resume".
    "Resume experiment with: Tuner.restore(",
    # Tune timing its own bookkeeping: on a busy machine, at every trial report.
    "which may be a performance bottleneck",
)


def verbose(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether Ray's own output is wanted: ``GENART_VERBOSE`` set to anything but 0 or empty."""
    return environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure(verbose_flag: bool = False, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set up genart's console for this process, before anything imports Ray.

    ``verbose_flag`` (``genart --verbose``) turns verbose mode on, for the processes this one
    starts too; otherwise quiet mode sets the variables of :data:`QUIET_ENV` that are unset.
    """
    if verbose_flag:
        environ[VERBOSE_ENV] = "1"
    if not verbose(environ):
        for key, value in QUIET_ENV.items():
            environ.setdefault(key, value)


def ray_init_args() -> dict:
    """``ray.init`` arguments for genart's console: workers' output and Ray's info lines only
    in verbose mode."""
    quiet = not verbose()
    return {
        "log_to_driver": not quiet,
        "logging_level": logging.WARNING if quiet else logging.INFO,
    }


def chatter(message: str) -> bool:
    """Whether ``message`` is one of Ray's that genart's console drops (:data:`RAY_CHATTER`)."""
    return any(words in message for words in RAY_CHATTER)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not chatter(record.getMessage())


_DROP_CHATTER = _DropChatter()


def _quiet_ray_loggers() -> None:
    """Ray's loggers with console handlers of their own (Ray Data's, Serve's) print warnings and
    errors only, and no chatter; their file handlers keep everything."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not (name == "ray" or name.startswith("ray.")) or not isinstance(logger, logging.Logger):
            continue
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(max(handler.level, logging.WARNING))
                handler.addFilter(_DROP_CHATTER)  # once: addFilter skips a filter it holds


class Display:
    """Prints emitted lines to ``stream``. On a terminal, a line with ``progress`` is a status
    line, redrawn in place by the next progress line of the same source; other lines print
    above it."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.status: tuple[object, str] | None = None  # (source, text) of the status line
        self.lock = threading.Lock()

    def show(self, line: str, progress: tuple[int, int] | None = None, source=None) -> None:
        with self.lock:
            if self.tty and progress:
                if self.status and self.status[0] != source:
                    self.stream.write("\n")  # another run's last progress stays on screen
                self.status = (source, _fit(f"{bar(*progress)} {line}"))
                self.stream.write("\r\x1b[K" + self.status[1])
            elif self.status:
                self.stream.write(f"\r\x1b[K{line}\n{self.status[1]}")
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """End the status line, so that what prints next starts on a line of its own."""
        with self.lock:
            if self.status:
                self.stream.write("\n")
                self.stream.flush()
                self.status = None


def bar(done: int, total: int) -> str:
    """A text progress bar: ``[#####---------------]``."""
    filled = BAR_WIDTH * min(max(done, 0), total) // total if total > 0 else 0
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"


def _fit(text: str) -> str:
    """``text`` cut to the terminal's width: a status line that wraps cannot be redrawn."""
    return text[: max(shutil.get_terminal_size().columns - 1, 20)]


class Lines:
    """The console actor: holds the lines workers emit until the driver takes them."""

    def __init__(self):
        self.lines: list[tuple[str, tuple[int, int] | None, str]] = []

    def put(self, line: str, progress: tuple[int, int] | None, source: str) -> None:
        self.lines.append((line, progress, source))

    def take(self) -> list[tuple[str, tuple[int, int] | None, str]]:
        taken, self.lines = self.lines, []
        return taken


class _Relay:
    """The driver's side: prints what the console actor holds, from a thread and on flush()."""

    def __init__(self, actor, display: Display):
        self.actor, self.display = actor, display
        self.lock = threading.Lock()  # one take-and-print at a time keeps the lines in order
        self.stopped = threading.Event()
        threading.Thread(target=self._loop, name="genart-console", daemon=True).start()

    def _loop(self) -> None:
        while not self.stopped.wait(POLL_S):
            self.flush()

    def flush(self) -> None:
        import ray

        with self.lock:
            if self.stopped.is_set() or not ray.is_initialized():
                return
            try:
                lines = ray.get(self.actor.take.remote())
            except Exception:  # Ray shutting down: nothing left to print
                return
            for line, progress, source in lines:
                self.display.show(line, progress, source)

    def stop(self) -> None:
        self.flush()
        self.stopped.set()
        self.display.finish()


_relay: _Relay | None = None  # set in the driver by start()
_actor = None  # a worker's handle on the console actor, looked up on first emit()


def start(context=None, relay: bool = True) -> None:
    """In the driver, once Ray is up: quiet Ray's loggers (unless verbose), tell Ray's notice
    of a dead worker in genart's words (:mod:`genart.compat.notices`), say where Ray's logs are,
    and start the console actor and its printing thread (once per process).

    ``context``: what ``ray.init`` returned; its session dir names the logs. ``relay=False``:
    no worker of this job emits lines (``genart serve``), so no console actor.
    """
    global _relay
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from genart.compat import notices

    if _relay is not None:
        return
    if not verbose():
        _quiet_ray_loggers()
    notices.install(lambda line: emit(f"genart: warning: {line}"), verbose(), chatter=chatter)
    session = (getattr(context, "address_info", None) or {}).get("session_dir")
    if session:
        hint = "" if verbose() else " (genart --verbose prints them here)"
        print(f"genart: Ray's logs are in {session}/logs{hint}", file=sys.stderr)
    if not relay:
        return
    # On the driver's node: the job ends with the driver anyway, and no other node's loss
    # should cost the run its console.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    actor = (
        ray.remote(num_cpus=0)(Lines)
        .options(name=ACTOR_NAME, get_if_exists=True, scheduling_strategy=here)
        .remote()
    )
    _relay = _Relay(actor, Display())
    # atexit runs the newest handler first: this one before the shutdown ray.init registered.
    atexit.register(stop)


def flush() -> None:
    """Print every line emitted so far (the driver, e.g. once a training run returned), and end
    a status line; elsewhere nothing to do."""
    if _relay is not None:
        _relay.flush()
        _relay.display.finish()


def stop() -> None:
    """Print what is left and stop the printing thread (at exit)."""
    global _relay
    if _relay is not None:
        _relay.stop()
        _relay = None


def emit(line: str, progress: tuple[int, int] | None = None) -> None:
    """Print ``line`` on genart's console, from the driver or from any Ray worker of its job.

    ``progress`` (done, total) makes it a status line on a terminal. A worker waits until the
    console holds the line, so a run's last lines print before the driver's next ones.
    """
    if _relay is not None:
        _relay.display.show(line, progress, source="driver")
        return
    actor = _console_actor()
    if actor is not None:
        import ray

        source = ray.get_runtime_context().get_worker_id()
        try:
            ray.get(actor.put.remote(line, progress, source), timeout=EMIT_TIMEOUT_S)
            return
        except Exception:  # the console is gone or stuck: the worker's own output keeps the line
            pass
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _console_actor():
    """This job's console actor, or None: without Ray, or when no driver started one."""
    global _actor
    if _actor is None and "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            try:
                _actor = ray.get_actor(ACTOR_NAME)
            except ValueError:  # no console in this job's namespace
                return None
    return _actor
