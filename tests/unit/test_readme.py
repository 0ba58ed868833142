"""The README's commands work: every `genart ...` line parses with the current CLI, every
`make ...` names a Makefile target, and the quick ones that need no Ray actually run.

Commands are read from the ```bash blocks of README.md (and, parse-only, of docs/*.md), with
`\\` line continuations joined and `#` comments dropped (shlex, as the shell does).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genart.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))

# The README's commands that run here, in its order, with no Ray and within seconds: verbs
# (first words after `genart`) -> smaller values for some options, so that the whole file runs
# in well under 30 s on 2 cores. The commands are otherwise exactly the README's.
RUN_HERE = {
    ("data", "synth"): {"--n": "8"},
    ("data", "preview"): {},
    ("data", "pack"): {},
    ("stylize", "gatys"): {"--size": "32", "--iterations": "2"},
    ("dream",): {"--size": "32", "--iterations": "1", "--octaves": "1"},
}


def bash_blocks(path: Path) -> list[str]:
    """The text of every ```bash block in a markdown file."""
    return re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def commands(path: Path, program: str) -> list[list[str]]:
    """Each command line starting with ``program`` in ``path``'s bash blocks, shell-split."""
    found = []
    for block in bash_blocks(path):
        pending = ""  # a command whose quotes span lines (bash -c "...") is read whole
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # no closing quotation yet
                continue
            pending = ""
            if words and words[0] == program:
                found.append(words[1:])
        assert not pending, f"{path.name}: unclosed quote in {pending!r}"
    return found


def readme_genart() -> list[list[str]]:
    return commands(README, "genart")


def test_the_readme_has_commands_for_every_workflow():
    verbs = {argv[0] for argv in readme_genart()}
    assert {"data", "train", "export", "sample", "interpolate", "arithmetic", "stylize", "dream",
            "translate", "eval", "onnx", "tune", "serve", "cluster-ready"} <= verbs  # fmt: skip
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_genart_command_parses(path):
    """argparse exits on an unknown verb, flag or choice: each documented command must parse."""
    parser = build_parser()
    for argv in commands(path, "genart"):
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `genart {shlex.join(argv)}` does not parse")
        assert callable(args.func)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_make_command_is_a_target(path):
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
    for argv in commands(path, "make"):
        assert argv and argv[0] in targets, f"{path.name}: `make {shlex.join(argv)}`"


def test_links_and_files_named_exist():
    """Relative links in the README and docs resolve, and the jobs they name exist."""
    for path in [README, *DOCS]:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name} links to {target}"
        for job in re.findall(r"\bjobs/[\w.-]+\.(?:py|yaml)\b", text):
            assert (REPO / job).exists(), f"{path.name} names {job}"


def test_nothing_outside_the_repository_is_named():
    for path in [README, *DOCS]:
        text = path.read_text()
        assert "/work/" not in text and "shared/" not in text, path.name


def substitute(argv: list[str], smaller: dict[str, str]) -> list[str]:
    """``argv`` with the value after each option in ``smaller`` replaced."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word in smaller:
            out[i + 1] = smaller[word]
    return out


def runnable() -> list[list[str]]:
    picked = []
    for argv in readme_genart():
        for verb, smaller in RUN_HERE.items():
            if tuple(argv[: len(verb)]) == verb:
                picked.append(substitute(argv, smaller))
    return picked


def outputs(argv: list[str]) -> list[Path]:
    """What a command writes: its --out/--output, or for `data preview` DIR-preview.png."""
    named = [Path(argv[i + 1]) for i, w in enumerate(argv[:-1]) if w in ("--out", "--output")]
    if argv[:2] == ["data", "preview"] and not named:
        named.append(Path(argv[2] + "-preview.png"))
    return named


def test_the_quick_commands_run(tmp_path, monkeypatch, capsys):
    """The README's data, Gatys and Deep Dream commands, in order, in an empty folder."""
    picked = runnable()
    assert len(picked) >= 6, "the README lost its quick commands"
    monkeypatch.chdir(tmp_path)
    for argv in picked:
        assert main(argv) == 0, f"`genart {shlex.join(argv)}` failed"
        for path in outputs(argv):
            assert path.exists(), f"`genart {shlex.join(argv)}` did not write {path}"
    assert "random" in (tmp_path / "out" / "gatys.json").read_text()  # results say how made
    capsys.readouterr()
