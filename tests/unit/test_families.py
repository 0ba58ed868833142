"""The one family table (genart.registry): pipelines, Serve kinds and CLI verbs derive from each
family's spec, and the CLI's help lists what the registry holds."""

import ast
from pathlib import Path

import pytest

from genart import registry
from genart.cli import main

GENART = Path(__file__).resolve().parents[2] / "genart"


@pytest.mark.parametrize("family", registry.names())
def test_every_family_declares_a_serve_kind_and_a_pipeline_that_serves_it(family):
    spec = registry.get(family)
    assert spec.serve in registry.SERVE_KINDS
    if spec.trained:
        assert family in spec.pipeline_class().families()
        assert spec.verbs, "a trained family no verb takes cannot be used from the CLI"


def test_verbs_and_kinds_select_families():
    assert registry.families(verb="translate") == ("cyclegan", "pix2pix")
    assert registry.families(verb="sample") == ("dcgan",)
    assert registry.families(serve=registry.IMAGE) == ("cyclegan", "fast_style", "pix2pix")
    assert registry.families(serve=registry.OPTIMISATION) == ("dream", "gatys")
    assert registry.families(verb="onnx", serve=registry.IMAGE) == registry.families(
        serve=registry.IMAGE
    )


@pytest.mark.parametrize(
    "argv, verb", [(["translate"], "translate"), (["onnx"], "onnx"), (["sample"], "sample"),
                   (["stylize", "fast"], "stylize fast"), (["stylize", "video"], "stylize video"),
                   (["stylize", "adain"], "stylize adain"),
                   (["eval", "translation"], "eval translation")],
)  # fmt: skip
def test_each_verb_lists_the_families_it_takes(argv, verb, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{', '.join(registry.families(verb=verb))} export (" in text


def test_a_verb_refuses_an_export_of_a_family_it_does_not_take(tmp_path, capsys):
    from exports import TINY_FAST_STYLE, make_export

    model = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    assert main(["sample", model, "--out", str(tmp_path / "grid.png")]) == 2
    assert "holds a 'fast_style' model; this takes dcgan" in capsys.readouterr().err


def imports(path: Path) -> set[str]:
    """The genart modules a source file imports, anywhere in it (type-checking blocks and
    function bodies too: a cycle through a deferred import is still a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("genart")}


def module_name(path: Path) -> str:
    parts = path.relative_to(GENART.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_in_genart():
    files = {module_name(p): p for p in GENART.rglob("*.py")}
    graph = {name: imports(path) & files.keys() - {name} for name, path in files.items()}
    done, stack = set(), []

    def visit(name: str) -> None:
        if name in stack:
            cycle = stack[stack.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        stack.append(name)
        for other in sorted(graph[name]):
            visit(other)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
