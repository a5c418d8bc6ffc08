"""``spimflow`` command line: schema, validate, demo, and the steps rules call."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from spimflow.annotate import read_points
from spimflow.checks import skip_notice, source_problems, validate_config_file
from spimflow.cohort import cohort_json_schema
from spimflow.config import json_schema
from spimflow.config_docs import config_reference_markdown
from spimflow.demo import make_demo
from spimflow.errors import ConfigError, InputFileError, SpimflowError
from spimflow.steps.detect.evaluate import evaluate_against_markers, parse_box
from spimflow.tuning import DEFAULT_RADIUS_UM, tune_config

SCHEMA_PATHS = {"sample": Path("schemas/config.schema.json"), "cohort": Path("schemas/cohort.schema.json")}


def schema_text(kind: str = "sample") -> str:
    schema = cohort_json_schema() if kind == "cohort" else json_schema()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    output = args.output or str(SCHEMA_PATHS[args.kind])
    regenerate = f"spimflow schema --kind {args.kind} -o {output}"
    return _write_or_check(output, schema_text(args.kind), args.check, regenerate)


def _write_or_check(path: str, text: str, check: bool, regenerate: str) -> int:
    if check:
        current = Path(path).read_text() if Path(path).exists() else ""
        if current != text:
            print(f"{path} is out of date; run `{regenerate}`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if path == "-":
        sys.stdout.write(text)
        return 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    return _write_or_check(
        args.output, config_reference_markdown(), args.check, f"spimflow config-docs -o {args.output}"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    run = validate_config_file(args.config, args.base)
    unreadable = [p for cfg in run.samples.values() for p in source_problems(cfg, args.base)]
    if unreadable:
        raise ConfigError("\n".join(f"{args.config}: {p}" for p in unreadable))
    if run.cohort is not None:
        groups = {g: sorted(s for s, grp in run.groups.items() if grp == g) for g in run.group_order()}
        listing = "; ".join(f"{g}: {', '.join(names)}" for g, names in groups.items())
        print(f"{args.config}: OK (cohort {run.cohort.cohort!r}, {len(run.samples)} samples; {listing})")
        return 0
    cfg = next(iter(run.samples.values()))
    notice = skip_notice(cfg)
    if notice:  # the same first line the workflow prints
        print(notice)
    chans = ", ".join(cfg.channels.all())
    if cfg.atlas is None:
        atlas = "none"
    elif cfg.atlas.format == "brainglobe":
        atlas = f"brainglobe {cfg.atlas.folder(args.base)}"
    else:
        atlas = f"allen {cfg.atlas.annotation}"
    print(f"{args.config}: OK (sample {cfg.sample!r}; channels: {chans}; atlas: {atlas})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = validate_config_file(args.config, args.base)
    if len(run.samples) != 1:
        raise ConfigError(f"{args.config}: evaluate takes one brain's sample config, not a cohort")
    cfg = next(iter(run.samples.values()))
    cells_path = Path(args.cells) if args.cells else Path(args.base) / cfg.counted_cells_file()
    if not cells_path.is_file():
        raise InputFileError(f"{cells_path}: cell table not found; run the workflow first (or pass --cells)")
    cells = pd.read_parquet(cells_path) if cells_path.suffix == ".parquet" else pd.read_csv(cells_path)
    markers = read_points(args.markers)
    if args.type and "type" in markers.columns:
        markers = markers[markers["type"].astype(str) == args.type]
    if not len(markers):
        raise InputFileError(f"{args.markers}: no markers" + (f" of type {args.type!r}" if args.type else ""))
    try:
        box = parse_box(args.box) if args.box else None
    except ValueError as exc:
        raise ConfigError(f"--box: {exc}") from None
    result = evaluate_against_markers(
        cells[["z", "y", "x"]].to_numpy(),
        markers[["z", "y", "x"]].to_numpy(),
        cfg.channels.signal.voxel_size,
        args.radius_um,
        box,
    )
    if args.json:
        print(
            json.dumps(
                {**result, "cells": str(cells_path), "markers_file": str(args.markers), "radius_um": args.radius_um},
                indent=2,
            )
        )
        return 0
    (z0, z1), (y0, y1), (x0, x1) = result["box"]
    print(
        f"cells {cells_path} vs markers {args.markers} inside z {z0:g}:{z1:g}, y {y0:g}:{y1:g}, "
        f"x {x0:g}:{x1:g} (matched one-to-one within {args.radius_um:g} µm)"
    )
    print(f"detected {result['detected']}, markers {result['markers']}, matched {result['matched']}")
    print(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  F1 {result['f1']:.3f}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    tune_config(
        args.config,
        args.markers,
        box=args.box,
        base=args.base,
        radius_um=args.radius_um,
        marker_type=args.type,
        out=args.out,
        rounds=args.rounds,
        threads=args.threads,
    )
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    # napari is imported here only: the rest of spimflow runs on display-less cluster nodes
    from spimflow.napari._viewer import view

    return view(args.path, args.space, args.screenshot)


def cmd_demo(args: argparse.Namespace) -> int:
    info = make_demo(Path(args.out), preset=args.preset, seed=args.seed)
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spimflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("schema", help="write the JSON Schema of the sample config")
    s.add_argument("--kind", choices=sorted(SCHEMA_PATHS), default="sample", help="sample (one brain) or cohort config")
    s.add_argument("-o", "--output", default=None, help="file to write, or - for stdout (default: schemas/<kind>)")
    s.add_argument("--check", action="store_true", help="exit 1 if the file differs from the models")
    s.set_defaults(func=cmd_schema)

    c = sub.add_parser("config-docs", help="write the configuration reference (Markdown)")
    c.add_argument("-o", "--output", default="docs/configuration.md", help="file to write, or - for stdout")
    c.add_argument("--check", action="store_true", help="exit 1 if the file differs from the models")
    c.set_defaults(func=cmd_config_docs)

    v = sub.add_parser("validate", help="check a sample config and its input files")
    v.add_argument("config")
    v.add_argument("--base", default=".", help="folder relative paths are taken from (the run's working directory)")
    v.set_defaults(func=cmd_validate)

    e = sub.add_parser("evaluate", help="precision, recall and F1 of a run's cells against hand-clicked markers")
    e.add_argument("config", help="the brain's sample config")
    e.add_argument(
        "--markers", required=True, help="markers: .cdb project, Cell Counter .xml, .csv or .parquet (z, y, x)"
    )
    e.add_argument("--box", help="z0:z1,y0:y1,x0:x1 (voxels): the annotated region; default: the markers' extent")
    e.add_argument("--radius-um", type=float, default=10.0, help="largest distance of a matched pair (µm)")
    e.add_argument("--type", default=None, help="only markers of this type (e.g. cell)")
    e.add_argument("--cells", default=None, help="cell table to evaluate (default: the run's counted cells)")
    e.add_argument("--base", default=".", help="folder the config's relative paths are taken from")
    e.add_argument("--json", action="store_true", help="print the numbers as JSON")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser(
        "tune",
        help="search detection and threshold parameters that maximise F1 against hand-clicked markers in a box",
    )
    t.add_argument("config", help="the brain's sample config (its signal must be ingested)")
    t.add_argument(
        "--markers", required=True, help="markers: .cdb project, Cell Counter .xml, .csv or .parquet (z, y, x)"
    )
    t.add_argument("--box", help="z0:z1,y0:y1,x0:x1 (voxels): the annotated region; default: the markers' extent")
    t.add_argument("--radius-um", type=float, default=DEFAULT_RADIUS_UM, help="largest distance of a matched pair (µm)")
    t.add_argument("--type", default=None, help="only markers of this type (e.g. cell)")
    t.add_argument("--out", default=None, help="write the YAML snippet of the best parameters here (default: print)")
    t.add_argument("--rounds", type=int, default=3, help="coordinate refinement rounds after the grid")
    t.add_argument("--threads", type=int, default=2, help="threads running the detection chain for several sizes")
    t.add_argument("--base", default=".", help="folder the config's relative paths are taken from")
    t.set_defaults(func=cmd_tune)

    w = sub.add_parser("view", help="open a results folder (or file) in napari, aligned in raw sample space")
    w.add_argument("path", help="results/<sample>, results/cohorts/<cohort>, or one file in them")
    w.add_argument("--space", choices=["raw", "atlas"], default="raw", help="raw sample space, or atlas-space maps")
    w.add_argument("--screenshot", default=None, help="save a PNG of the viewer and exit (no window)")
    w.set_defaults(func=cmd_view)

    d = sub.add_parser("demo", help="write the synthetic demo atlas, sample and ground truth")
    d.add_argument("--out", default="resources/demo")
    d.add_argument("--preset", choices=["small", "large"], default="small")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpimflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
