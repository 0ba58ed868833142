"""``genart models list|show|remove CAT``: the models of a catalogue (genart.catalogue)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list, show or remove the models of a catalogue")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    q = verbs.add_parser("list", help="a table: name, family, size, created, scores")
    q.add_argument("catalogue", help="catalogue folder or s3:// prefix")
    q.add_argument("--json", action="store_true", help="one JSON list of the models instead")
    q.set_defaults(func=list_models)
    for verb, what, func in (
        ("show", "one model's manifest (source run and step, scores, files)", show),
        ("remove", "delete one model from the catalogue", remove),
    ):
        q = verbs.add_parser(verb, help=what)
        q.add_argument("catalogue", help="catalogue folder or s3:// prefix")
        q.add_argument("name", help="the model's name in the catalogue")
        q.set_defaults(func=func)


def list_models(args) -> int:
    from genart.catalogue import Catalogue

    entries = Catalogue(args.catalogue).entries()
    if args.json:
        print(json.dumps([entry.summary() for entry in entries], indent=1))
        return 0
    if not entries:
        print(f"no models in {args.catalogue}")
        return 0
    rows = [row(entry) for entry in entries]
    header = ("name", "family", "size", "created", "scores")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for cells in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1])
    return 0


def row(entry) -> tuple[str, str, str, str, str]:
    """The table row of a catalogue entry; an unusable one says why in place of its scores."""
    if not entry.usable:
        return (entry.name, entry.family or "-", "-", "-", f"unusable: {entry.problem}")
    from genart import registry

    size = f"{entry.size / 1e6:.1f} MB" if entry.size is not None else "-"
    created = (entry.manifest.get("created") or "-").replace("T", " ").removesuffix("Z")
    metric = registry.get(entry.family).metric
    return (entry.name, entry.family, size, created, scores(entry.manifest["scores"], metric))


def scores(found: dict, metric: str) -> str:
    """``swd 9.5 (held-out, step 200)``: the family's ``metric`` (each score where the export
    has not that one), then the split and step it was taken at (``models show``: all)."""
    shown = {metric: found[metric]} if metric in found else found
    numbers = (f"{k} {v:.4g}" for k, v in shown.items() if k != "step" and _number(v))
    values = " ".join(numbers)
    if not values:
        return "-"
    where = [str(found["split"])] if "split" in found else []
    where += [f"step {found['step']}"] if "step" in found else []
    return f"{values} ({', '.join(where)})" if where else values


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def show(args) -> int:
    from genart.catalogue import Catalogue

    entry = Catalogue(args.catalogue).usable(args.name)
    print(json.dumps(entry.manifest, indent=1))
    return 0


def remove(args) -> int:
    from genart.catalogue import Catalogue

    Catalogue(args.catalogue).remove(args.name)
    print(f"removed {args.name} from {args.catalogue}")
    return 0
