"""genart's console: quiet by default, Ray's output with --verbose, progress lines from anywhere."""

import contextlib
import io
import logging

import pytest

from genart import console


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_quiet_by_default_without_overriding_the_users_settings():
    environ = {"RAY_DATA_DISABLE_PROGRESS_BARS": "0"}
    console.configure(False, environ)
    assert not console.verbose(environ)
    assert environ["RAY_DATA_DISABLE_PROGRESS_BARS"] == "0"  # the user's choice stands
    environ = {}
    console.configure(False, environ)
    assert environ == console.QUIET_ENV


@pytest.mark.parametrize(("flag", "environ"), [(True, {}), (False, {"GENART_VERBOSE": "1"})])
def test_verbose_from_the_flag_or_the_environment_sets_nothing_quiet(flag, environ):
    console.configure(flag, environ)
    assert console.verbose(environ) and environ == {"GENART_VERBOSE": "1"}


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_verbose_off_values(value):
    assert not console.verbose({"GENART_VERBOSE": value})


def test_the_global_flag_turns_verbose_on_for_child_processes(monkeypatch, tmp_path, capsys):
    from genart.cli import main

    monkeypatch.setenv("GENART_VERBOSE", "")  # a set-then-delete puts back what was there
    monkeypatch.delenv("GENART_VERBOSE")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: [\n")  # fails before Ray starts
    assert main(["--verbose", "train", "dcgan", "--config", str(recipe)]) == 2
    assert console.verbose()


def test_ray_output_only_when_verbose(monkeypatch):
    monkeypatch.delenv("GENART_VERBOSE", raising=False)
    assert console.ray_init_args() == {"log_to_driver": False, "logging_level": logging.WARNING}
    monkeypatch.setenv("GENART_VERBOSE", "1")
    assert console.ray_init_args() == {"log_to_driver": True, "logging_level": logging.INFO}


def test_rays_console_handlers_print_warnings_their_files_everything(tmp_path):
    logger = logging.getLogger("ray.genart_test")
    stream, file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "log")
    logger.addHandler(stream)
    logger.addHandler(file)
    try:
        console._quiet_ray_loggers()
        assert stream.level == logging.WARNING and file.level == logging.NOTSET
    finally:
        logger.removeHandler(stream)
        logger.removeHandler(file)
        file.close()


# What a 2-core sweep's console carried beside genart's own lines (Ray 2.60).
POOL_WARNING = (
    "WARNING: 8 PYTHON worker processes have been started on node: b6b6 with address: "
    "192.0.2.2, which is 4x the maximum expected startup concurrency (2). This could be a "
    "result of using a large number of actors, tasks blocked in ray.get() calls, ..."
)
TUNE_ADVICE = (
    "Experiment has been interrupted, but the most recent state was saved.\n"
    'Resume experiment with: Tuner.restore(path="/tmp/sweeps/s", trainable=...)'
)


def test_rays_console_handlers_drop_tunes_resume_advice_and_keep_other_warnings():
    logger = logging.getLogger("ray.genart_test_advice")
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    logger.addHandler(stream)
    try:
        console._quiet_ray_loggers()
        logger.warning(TUNE_ADVICE)
        logger.warning("Trial t1 errored")
    finally:
        logger.removeHandler(stream)
    assert out.getvalue() == "Trial t1 errored\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_the_worker_pool_count_the_raylet_pushes_prints_only_when_verbose(
    verbose, monkeypatch, capsys
):
    import ray._private.worker as worker

    from genart.compat import notices

    monkeypatch.setattr(worker, "print_to_stdstream", worker.print_to_stdstream)  # restored after
    monkeypatch.setenv("RAY_COLOR_PREFIX", "0")
    notices.install(print, verbose, actors=dict, chatter=console.chatter)
    # Worded apart from the other run's: Ray drops lines like recent ones.
    other = f"The actor or task cannot be scheduled right now ({verbose})"
    for line in (POOL_WARNING, other):
        # What Ray's listen_error_messages thread calls for each notice pushed to the driver.
        worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, False)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"(raylet) {POOL_WARNING}"] * verbose + [f"(raylet) {other}"]


def test_chatter_is_rays_words_that_genart_replaces():
    assert console.chatter(POOL_WARNING) and console.chatter(TUNE_ADVICE)
    assert console.chatter(
        "Processing trial results took 0.766 s, which may be a performance bottleneck. Please "
        "consider reporting results less frequently to Ray Tune."
    )
    assert not console.chatter("genart tune: 2 trials unfinished: continue with --resume")


def test_lines_print_in_order_off_a_terminal():
    out = io.StringIO()
    display = console.Display(out)
    display.show("step 1/2", progress=(1, 2), source="a")
    display.show("note")
    display.finish()
    assert out.getvalue() == "step 1/2\nnote\n"


def test_on_a_terminal_progress_is_one_line_redrawn_in_place():
    out = Terminal()
    display = console.Display(out)
    display.show("step 1/4", progress=(1, 4), source="a")
    display.show("data: 96 images")
    display.show("step 2/4", progress=(2, 4), source="a")
    display.show("step 1/2", progress=(1, 2), source="b")  # another run: a's line stays
    display.finish()
    screen = out.getvalue()
    assert screen == (
        "\r\x1b[K[#####---------------] step 1/4"
        "\r\x1b[Kdata: 96 images\n[#####---------------] step 1/4"
        "\r\x1b[K[##########----------] step 2/4"
        "\n\r\x1b[K[##########----------] step 1/2\n"
    )


def test_bar():
    assert console.bar(0, 10) == "[" + "-" * 20 + "]"
    assert console.bar(10, 10) == "[" + "#" * 20 + "]"
    assert console.bar(15, 10) == console.bar(10, 10)
    assert console.bar(1, 0) == console.bar(0, 10)


def test_emit_without_ray_or_console_prints_to_stdout(capsys):
    console.emit("[run] step 2/8")
    assert capsys.readouterr().out == "[run] step 2/8\n"


def test_the_console_actor_hands_over_each_line_once():
    lines = console.Lines()
    lines.put("one", None, "w")
    lines.put("two", (2, 8), "w")
    assert lines.take() == [("one", None, "w"), ("two", (2, 8), "w")]
    assert lines.take() == []


@pytest.mark.ray
def test_lines_a_ray_worker_emits_print_on_the_driver_in_order(ray_local, monkeypatch, capsys):
    ray = ray_local
    monkeypatch.setenv("GENART_VERBOSE", "1")  # leaves the shared Ray's loggers as they are

    @ray.remote
    def work(n):
        from genart import console as worker_console

        for i in range(n):
            worker_console.emit(f"line {i}", progress=(i, n))

    console.start()
    try:
        ray.get(work.remote(5))
        console.flush()  # once the task returned, every line is there
        assert capsys.readouterr().out.splitlines() == [f"line {i}" for i in range(5)]
    finally:
        console.stop()
        # No console for the later tests' workers. stop() dropped the last handle, so Ray may
        # already have ended the (non-detached) actor: then there is nothing left to kill.
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(console.ACTOR_NAME))
