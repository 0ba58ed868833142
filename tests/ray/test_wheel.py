"""genart installed from its wheel works away from the source tree: what a user gets from
``pip install .`` (not editable) or a package index.

The wheel is built from a copy of what it packages and installed (``--no-deps``) into a fresh
virtual environment; a ``.pth`` file lends it this environment's third-party packages (torch,
Ray: installing those again would take minutes and the network). Commands run from an empty
folder with no ``PYTHONPATH``, so nothing outside the installed package can be read.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ("genart", "pyproject.toml", "README.md")  # what building the wheel reads


def run(argv: list[str], cwd: Path, env: dict, timeout: float) -> str:
    """Run a command; its output, or a failure that shows it."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a venv holding only the genart wheel, environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in PACKAGED:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    shutil.rmtree(source / "genart" / "__pycache__", ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    run([*build, str(source), "-w", str(tmp / "dist")], tmp, env, 300)
    (wheel,) = (tmp / "dist").glob("genart-*.whl")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env, 120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    # Plain path lines: this environment's packages, after the venv's own; .pth files in those
    # folders are not processed, so an editable genart installed there stays out of sight.
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        tmp, env, 300)  # fmt: skip
    return venv / "bin", env


def test_the_installed_wheel_runs_the_demo_and_prepares_serving(installed, tmp_path):
    bin_dir, env = installed
    here = tmp_path / "elsewhere"  # an empty folder, no checkout above it
    here.mkdir()
    where = run([str(bin_dir / "python"), "-c", "import genart; print(genart.__file__)"],
                here, env, 120)  # fmt: skip
    assert where.strip().startswith(str(bin_dir.parent)), where

    genart = str(bin_dir / "genart")
    assert "COMMAND" in run([genart, "--help"], here, env, 120)
    # A small digits set first: genart demo trains on it rather than drawing 6,000 digits.
    synth = [genart, "data", "synth", "digits", "--out", "runs/data/digits", "--n", "256"]
    run([*synth, "--size", "32"], here, env, 120)
    demo = run([genart, "demo", "--steps", "4", "--workers", "1"], here, env, 400)
    assert "Demo finished" in demo and (here / "runs").is_dir()
    prepared = run([genart, "serve", "--prepare"], here, env, 300)
    assert "exporting the DCGAN of" in prepared  # the demo run just trained
    assert (here / "runs" / "serve-demo" / "models" / "adain-demo" / "export.json").is_file()
