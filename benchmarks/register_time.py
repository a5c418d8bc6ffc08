"""Benchmarks for the alignment stage (run by hand; prints numbers).

    python benchmarks/register_time.py resample [--planes 400 --size 1024]
    python benchmarks/register_time.py demo [--threads 2]
    python benchmarks/register_time.py points [--n 5000000]
    python benchmarks/register_time.py allen [--repeat 3 --threads 2 --registration '{"bspline": {...}}']

* ``resample``: a synthetic raw OME-Zarr (uint16, 4×2×2 µm) resampled to 25 µm with the
  streaming resampler; prints throughput and peak RSS (which must stay near one slab of
  raw planes, not the volume).
* ``demo``: makes the demo (small preset) in a temp folder, resamples the
  autofluorescence from the raw planes and runs the full registration step (guard +
  affine + B-spline + warps); prints wall times, Dice against the demo's true
  annotation and the point error of the true cells.
* ``points``: sample→atlas and back for millions of points through a demo-like chain.
* ``allen``: the realistic case. A 50 µm atlas made from the real Allen CCFv3 2017
  annotation in ``../shared/data`` (annotation subsampled from 25 µm, the Allen
  ontology, and a synthetic reference: a grey level per region, texture, blur), and a
  sagittal brain (``lsp`` against the atlas's ``ras``) of 441 × 371 × 612 raw voxels at
  30 × 25 × 25 µm pulled from the 25 µm reference through a known affine + smooth
  deformation (:func:`spimflow.demo.truth.random_transform`, deformation up to 100 µm),
  with flat-field, photon and read noise, then resampled to 50 µm by the pipeline's own
  resampler. The case is built once into ``--cache`` (~2 min). Each repetition runs the
  ``register`` task itself (``spimflow.tasks.register.run``, exactly as the Snakemake
  rule does) in a fresh Python process, and prints its time by phase (wall and CPU), its
  peak RSS, and the Dice of the 14 major divisions and of the annotation's own labels
  (the leaves; labels of ≥ 100 true voxels) against the known truth.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_resample(planes: int, size: int) -> None:
    from spimflow.geometry import ResampleGrid
    from spimflow.io.omezarr import create_ome_zarr, open_ome_zarr
    from spimflow.orientation import Orientation
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.resample import resample_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.ome.zarr"
        arr = create_ome_zarr(path, (planes, size, size), np.uint16, (4.0, 2.0, 2.0), chunks=(16, 256, 256), n_levels=1)
        rng = np.random.default_rng(0)
        for z in range(0, planes, 16):
            arr[z : z + 16] = rng.integers(0, 4000, (min(16, planes - z), size, size), dtype=np.uint16)
        raw_mb = planes * size * size * 2 / 1e6
        base = peak_rss_mb()
        img = open_ome_zarr(path)
        grid = ResampleGrid(img.shape, img.voxel_size, Orientation.from_codes("ipl", "asr"), (25.0, 25.0, 25.0))
        t0 = time.perf_counter()
        out = resample_image(img.array, grid, ResampleParams())
        dt = time.perf_counter() - t0
        print(
            f"resample: raw {img.shape} uint16 ({raw_mb:.0f} MB) -> {out.shape} in {dt:.1f} s "
            f"({raw_mb / dt:.0f} MB/s); peak RSS {peak_rss_mb():.0f} MB (before: {base:.0f} MB)"
        )


def bench_demo(threads: int) -> None:
    import pandas as pd
    import tifffile

    from spimflow.atlas import load_brainglobe
    from spimflow.demo import make_demo
    from spimflow.geometry import ResampleGrid
    from spimflow.orientation import Orientation
    from spimflow.params.register import RegisterParams
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.register import GuardContext, register_to_atlas
    from spimflow.steps.resample import resample_image
    from spimflow.transforms import ElastixChain, SampleAtlasTransform

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_demo(Path(tmp), preset="small", seed=0)
        print(f"demo data: {time.perf_counter() - t0:.1f} s")
        atlas = load_brainglobe(Path(tmp) / "atlas")
        planes = sorted((Path(tmp) / "sample" / "autofluorescence").glob("Z*.tif"))
        raw = np.stack([tifffile.imread(p) for p in planes])
        grid = ResampleGrid(
            raw.shape, (10.0, 5.0, 5.0), Orientation.from_codes("ipl", atlas.orientation), atlas.voxel_size
        )
        t0 = time.perf_counter()
        sample = resample_image(raw, grid, ResampleParams())
        print(f"resample autofluorescence {raw.shape} -> {sample.shape}: {time.perf_counter() - t0:.2f} s")
        ctx = GuardContext(grid.orientation, atlas.orientation, "channels.autofluorescence.orientation", "ipl", threads)
        reg = register_to_atlas(
            sample, atlas.reference.astype(np.float32), atlas.annotation, atlas.voxel_size, RegisterParams(), ctx
        )
        print("registration seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in reg.seconds.items()))
        print(f"NCC before {reg.similarity_before:.3f} after {reg.similarity_after:.3f}")
        truth = tifffile.imread(Path(tmp) / "truth" / "annotation_in_resampled.tif")
        ids = [k for k in np.unique(truth) if k]
        w = reg.annotation_in_sample
        dice = {k: 2 * ((w == k) & (truth == k)).sum() / ((w == k).sum() + (truth == k).sum()) for k in ids}
        size = {k: (truth == k).sum() for k in ids}
        big = sorted(ids, key=lambda k: -size[k])[:5]
        print(
            f"Dice over {len(ids)} regions: mean {np.mean(list(dice.values())):.3f}, min {min(dice.values()):.3f}; "
            f"5 largest: " + ", ".join(f"{k}:{dice[k]:.3f}" for k in big)
        )
        T = SampleAtlasTransform(
            atlas.voxel_size, atlas.shape, {"signal": grid}, ElastixChain.from_maps(reg.atlas_maps)
        )
        cells = pd.read_csv(Path(tmp) / "truth" / "cells.csv")
        est = T.sample_to_atlas(cells[["z", "y", "x"]].to_numpy(), "signal")
        err = np.linalg.norm(est - cells[["az", "ay", "ax"]].to_numpy(), axis=1)
        print(
            f"true cells: {len(cells)}, point error mean {err.mean():.3f} median {np.median(err):.3f} "
            f"p95 {np.percentile(err, 95):.3f} atlas voxels"
        )


# -- the realistic case: real Allen annotation, synthetic reference, sagittal anisotropic brain -----------

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "allen_ccf_2017_25um"
ALLEN_ORIENTATION = "ras"  # the volume as tifffile reads it (see ../shared/data/README.md)
ALLEN_SAMPLE_ORIENTATION = "lsp"  # sagittal: planes across the hemispheres, rows superior->inferior
ALLEN_SAMPLE_VOXEL = (30.0, 25.0, 25.0)
ALLEN_MARGIN = 1.16  # field of view / brain extent per axis
ATLAS_UM = 50.0
# major divisions and their grey level in the synthetic reference (white matter bright, ventricles dark)
MAJORS = {
    "Isocortex": 0.55,
    "OLF": 0.62,
    "HPF": 0.48,
    "CTXsp": 0.58,
    "STR": 0.45,
    "PAL": 0.60,
    "TH": 0.66,
    "HY": 0.57,
    "MB": 0.70,
    "P": 0.76,
    "MY": 0.80,
    "CB": 0.52,
    "fiber tracts": 1.0,
    "VS": 0.15,
}


def _major_of(ids: np.ndarray, onto) -> np.ndarray:
    """Index into MAJORS of each label's major division (-1: none, e.g. 0 or unknown ids)."""
    major_ids = {onto.lookup_acronym(a): k for k, a in enumerate(MAJORS)}
    out = np.full(len(ids), -1, int)
    for i, lid in enumerate(ids):
        if lid in onto:
            hits = [major_ids[p] for p in onto.path(int(lid)) if p in major_ids]
            out[i] = hits[-1] if hits else -1
    return out


def build_allen_case(folder: Path, seed: int = 0) -> dict:
    """Write the realistic case into ``folder`` (atlas, raw and resampled autofluorescence,
    truth) and return its description (also ``folder/case.json``, written last)."""
    import json

    import tifffile
    from scipy import ndimage

    from spimflow.atlas import read_volume
    from spimflow.atlas.ontology import Ontology
    from spimflow.demo.truth import oriented_um_to_atlas_um, random_transform
    from spimflow.geometry import ResampleGrid
    from spimflow.io.omezarr import create_ome_zarr, open_ome_zarr, write_ome_zarr
    from spimflow.orientation import Orientation
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.resample import resample_image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    onto = Ontology.from_allen_json(SHARED / "ABA_annotation.json")
    ann25 = read_volume(SHARED / "ABA_25um_2017_annotation.tif.lzma")
    ids, inverse = np.unique(ann25, return_inverse=True)
    major = _major_of(ids, onto)
    level = np.where(major >= 0, np.array(list(MAJORS.values()) + [0.0])[major], 0.6)
    level = level * (1 + rng.uniform(-0.25, 0.25, len(ids)))  # every region its own grey level
    level[ids == 0] = 0.0
    ref25 = level[inverse.reshape(ann25.shape)].astype(np.float32)
    del inverse
    inside = ann25 > 0
    texture = ndimage.gaussian_filter(rng.standard_normal(ann25.shape, dtype=np.float32), 2.0)
    texture *= 0.05 / texture[inside].std()
    ref25 = ndimage.gaussian_filter(ref25 * (1 + texture) * inside, 0.7) * 800.0
    del texture, inside
    print(f"  synthetic 25 µm reference {ref25.shape}: {time.perf_counter() - t0:.0f} s", flush=True)

    # the 50 µm atlas: voxel i of 50 µm is voxel 2i of 25 µm (centres at integer indices)
    atlas_dir = folder / "atlas"
    atlas_dir.mkdir(exist_ok=True)
    ann50 = np.ascontiguousarray(ann25[::2, ::2, ::2])
    ref50 = np.ascontiguousarray(ndimage.gaussian_filter(ref25, 0.5)[::2, ::2, ::2])
    hem50 = np.ascontiguousarray(read_volume(SHARED / "ABA_25um_2017_hemispheres.tif.lzma")[::2, ::2, ::2])
    tifffile.imwrite(atlas_dir / "annotation.tif", ann50)
    tifffile.imwrite(atlas_dir / "reference.tif", np.clip(np.rint(ref50), 0, 65535).astype(np.uint16))
    tifffile.imwrite(atlas_dir / "hemispheres.tif", hem50)
    atlas_cfg = {
        "format": "allen",
        "annotation": str(atlas_dir / "annotation.tif"),
        "reference": str(atlas_dir / "reference.tif"),
        "hemispheres": str(atlas_dir / "hemispheres.tif"),
        "ontology": str(SHARED / "ABA_annotation.json"),
        "voxel_size": [ATLAS_UM] * 3,
        "orientation": ALLEN_ORIENTATION,
    }

    # the sample: field of view = brain box × margin, in the sample's own axes and voxels
    orient = Orientation.from_codes(ALLEN_SAMPLE_ORIENTATION, ALLEN_ORIENTATION)
    oriented_vs = orient.oriented_values(ALLEN_SAMPLE_VOXEL)
    oriented_shape = [int(round(ALLEN_MARGIN * (n - 1) * 25.0 / v)) + 1 for n, v in zip(ann25.shape, oriented_vs)]
    raw_shape = [0, 0, 0]
    for i, j in enumerate(orient.perm):
        raw_shape[j] = oriented_shape[i]
    grid = ResampleGrid(tuple(raw_shape), ALLEN_SAMPLE_VOXEL, orient, (ATLAS_UM,) * 3)
    c_sample = [(n - 1) * v / 2 for n, v in zip(grid.oriented_shape, grid.oriented_voxel_size)]
    c_atlas = [(n - 1) * 25.0 / 2 for n in ann25.shape]
    tf = random_transform(rng, c_sample, c_atlas, max_deformation_um=100.0)
    raw_path = folder / "raw_autofluorescence.ome.zarr"
    arr = create_ome_zarr(raw_path, raw_shape, np.uint16, ALLEN_SAMPLE_VOXEL, chunks=(16, 384, 640), n_levels=1)
    _, ny, nx = raw_shape
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    flat = (1.0 - 0.1 * np.linspace(-1, 1, ny) ** 2)[:, None] * (1.0 + 0.2 * np.linspace(-1, 1, nx))[None, :]
    slab = 16
    for z0 in range(0, raw_shape[0], slab):
        planes = []
        for z in range(z0, min(z0 + slab, raw_shape[0])):
            raw_pts = np.stack([np.full(yy.size, z, float), yy.ravel(), xx.ravel()], axis=1)
            a25 = oriented_um_to_atlas_um(grid.sample_to_resampled(raw_pts) * ATLAS_UM, tf) / 25.0
            tissue = ndimage.map_coordinates(ref25, a25.T, order=1, mode="constant", cval=0, prefilter=False)
            image = tissue.reshape(ny, nx) * flat + 40.0  # + a little out-of-brain autofluorescence
            noisy = rng.poisson(image) + 100.0 + rng.normal(0, 6.0, image.shape)
            planes.append(np.clip(np.rint(noisy), 0, 65535).astype(np.uint16))
        arr[z0 : z0 + len(planes)] = np.stack(planes)
    del ref25
    print(f"  raw sample {tuple(raw_shape)} at {ALLEN_SAMPLE_VOXEL} µm: {time.perf_counter() - t0:.0f} s", flush=True)

    # resampled exactly as the resample rule does
    raw = open_ome_zarr(raw_path)
    resampled = resample_image(raw.array, grid, ResampleParams())
    write_ome_zarr(
        folder / "resampled_autofluorescence.ome.zarr",
        resampled,
        (ATLAS_UM,) * 3,
        chunks=(64, 64, 64),
        n_levels=1,
        name="autofluorescence resampled",
        extra_attrs={"channel": "autofluorescence", "resample": grid.to_dict(), "atlas_orientation": ALLEN_ORIENTATION},
    )
    # the truth: the 50 µm annotation pulled into the resampled grid through the known transform
    truth = np.zeros(grid.shape, np.uint32)
    plane = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape[1:]], indexing="ij"), -1).reshape(-1, 2)
    for z in range(grid.shape[0]):
        pts = np.column_stack([np.full(len(plane), z), plane]) * ATLAS_UM
        a50 = oriented_um_to_atlas_um(pts, tf) / ATLAS_UM
        lab = ndimage.map_coordinates(ann50, a50.T, order=0, mode="constant", cval=0, prefilter=False)
        truth[z] = lab.reshape(grid.shape[1:])
    tifffile.imwrite(folder / "truth_annotation_in_resampled.tif", truth)
    channel = {
        "source": {"format": "tiff", "path": "unused.tif"},
        "voxel_size": list(ALLEN_SAMPLE_VOXEL),
        "orientation": ALLEN_SAMPLE_ORIENTATION,
    }
    case = {
        "atlas": atlas_cfg,
        "channels": {"signal": channel, "autofluorescence": channel},
        "raw": str(raw_path),
        "resampled": str(folder / "resampled_autofluorescence.ome.zarr"),
        "truth": str(folder / "truth_annotation_in_resampled.tif"),
        "raw_shape": list(raw_shape),
        "resampled_shape": list(grid.shape),
        "atlas_shape": list(ann50.shape),
        "transform": tf,
        "seed": seed,
    }
    (folder / "case.json").write_text(json.dumps(case, indent=1))
    print(
        f"  resampled {grid.shape}, atlas {ann50.shape} at {ATLAS_UM} µm; case built in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return case


def run_register_task(case: dict, out: Path, threads: int, registration: dict) -> dict:
    """Run the ``register`` task exactly as its Snakemake rule would (in this process);
    return wall and CPU seconds (whole process, including importing the task) and peak RSS."""
    import json
    import resource
    from types import SimpleNamespace

    t_start = time.perf_counter()
    cpu0 = time.process_time()
    from spimflow.params.register import RegisterParams
    from spimflow.tasks import register, setup_logging

    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    setup_logging(str(out / "logs" / "register.log"))
    smk = SimpleNamespace(
        params=SimpleNamespace(
            task="register",
            registration=RegisterParams.model_validate(registration).model_dump(mode="json"),
            atlas=case["atlas"],
            channels=case["channels"],
        ),
        input=SimpleNamespace(
            autofluorescence=case["resampled"], raw_autofluorescence=case["raw"], raw_signal=case["raw"]
        ),
        output=SimpleNamespace(
            summary=str(out / "registration.json"),
            annotation=str(out / "annotation_in_sample.ome.zarr"),
            reference=str(out / "reference_in_sample.ome.zarr"),
            qc=[str(out / f"qc_{a}.png") for a in range(3)],
        ),
        log=[str(out / "logs" / "register.log")],
        threads=threads,
        rule="register",
    )
    register.run(smk)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    meta = json.loads((out / "registration.json").read_text())
    return {
        "wall": time.perf_counter() - t_start,
        "cpu": time.process_time() - cpu0,
        "peak_rss_mb": ru.ru_maxrss / 1024,
        "seconds": meta["seconds"],
        "cpu_seconds": meta.get("cpu_seconds", {}),
    }


def elastix_stages(log_file: Path) -> list[dict]:
    """Per elastix stage (parameter map) of an elastix log: seconds building the image
    pyramids, iterating each resolution, and writing the result (resampling etc.)."""
    import re

    pyramid = re.compile(r"Preparation of the image pyramids took: (\d+) ms")
    level = re.compile(r"Time spent in resolution \d+ \(ITK initialization and iterating\): ([0-9.]+)")
    result = re.compile(r"Time spent on saving the results, applying the final transform etc.: (\d+) ms")
    stages: list[dict] = []
    if not log_file.is_file():
        return stages
    for line in log_file.read_text(errors="replace").splitlines():
        if m := pyramid.match(line):
            stages.append({"pyramid": int(m.group(1)) / 1000, "resolutions": [], "result": 0.0})
        elif (m := level.match(line)) and stages:
            stages[-1]["resolutions"].append(float(m.group(1)))
        elif (m := result.match(line)) and stages:
            stages[-1]["result"] = int(m.group(1)) / 1000
    for st in stages:
        st["total"] = st["pyramid"] + sum(st["resolutions"]) + st["result"]
    return stages


def dice_scores(warped: np.ndarray, truth: np.ndarray, onto, min_voxels: int = 100) -> dict:
    """Dice of the major divisions and of every annotation label (leaf) with ≥ ``min_voxels`` true voxels."""
    ids = np.union1d(np.unique(truth), np.unique(warped))
    t, w = np.searchsorted(ids, truth).ravel(), np.searchsorted(ids, warped).ravel()
    n = len(ids)
    size_t, size_w = np.bincount(t, minlength=n), np.bincount(w, minlength=n)
    inter = np.bincount(t[t == w], minlength=n)
    leaves = [k for k in range(n) if ids[k] and size_t[k] >= min_voxels]
    leaf = np.array([2 * inter[k] / (size_t[k] + size_w[k]) for k in leaves])
    major = _major_of(ids, onto)
    mt, mw = major[t], major[w]
    m_dice = {}
    for k, name in enumerate(MAJORS):
        a, b = mt == k, mw == k
        if a.sum():
            m_dice[name] = float(2 * (a & b).sum() / (a.sum() + b.sum()))
    tb, wb = ids[t] > 0, ids[w] > 0
    brain = float(2 * (tb & wb).sum() / (tb.sum() + wb.sum()))
    return {
        "major": m_dice,
        "major_mean": float(np.mean(list(m_dice.values()))),
        "leaf_median": float(np.median(leaf)),
        "leaf_mean": float(np.mean(leaf)),
        "n_leaves": len(leaves),
        "brain": brain,
    }


def bench_allen(cache: Path, repeat: int, threads: int, registration: str, seed: int) -> None:
    import json
    import os
    import shutil
    import subprocess
    import sys

    import tifffile

    from spimflow.atlas.ontology import Ontology
    from spimflow.io.omezarr import open_ome_zarr

    if not (SHARED / "ABA_25um_2017_annotation.tif.lzma").is_file():
        raise SystemExit(f"the realistic case needs the Allen annotation in {SHARED} (../shared/data)")
    cache = cache.resolve()
    if (cache / "case.json").is_file() and json.loads((cache / "case.json").read_text()).get("seed") == seed:
        case = json.loads((cache / "case.json").read_text())
    else:
        print(f"building the realistic case in {cache} ...", flush=True)
        case = build_allen_case(cache, seed)
    truth = tifffile.imread(case["truth"])
    onto = Ontology.from_allen_json(SHARED / "ABA_annotation.json")
    reg = json.loads(registration) if registration else {}
    print(
        f"case: raw {tuple(case['raw_shape'])} at {ALLEN_SAMPLE_VOXEL} µm ('{ALLEN_SAMPLE_ORIENTATION}'), resampled "
        f"{tuple(case['resampled_shape'])}, atlas {tuple(case['atlas_shape'])} at {ATLAS_UM} µm "
        f"('{ALLEN_ORIENTATION}'); threads {threads}; registration {reg or 'defaults'}"
    )
    runs = []
    for r in range(repeat):
        out = cache / f"run{r}"
        shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "_allen_task", str(cache), str(out), str(threads), json.dumps(reg)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"register task failed:\n{res.stderr[-3000:]}")
        m = json.loads(res.stdout.strip().splitlines()[-1])
        warped = np.asarray(open_ome_zarr(out / "annotation_in_sample.ome.zarr").array[...])
        d = dice_scores(warped, truth, onto)
        s, c = m["seconds"], m["cpu_seconds"]
        stages = elastix_stages(out / "logs" / "elastix_atlas.log")

        def cpu(k, c=c):
            return f"/{c[k]:.1f}" if k in c else ""

        stage_text = "; ".join(
            f"{name} {st['total']:.1f} = pyramid {st['pyramid']:.1f} + levels "
            + "+".join(f"{v:.1f}" for v in st["resolutions"])
            + f" + result {st['result']:.1f}"
            for name, st in zip(["affine", "bspline", "stage 3", "stage 4"], stages)
        )
        print(
            f"run {r + 1} (load {load:.2f}): task wall {m['wall']:.1f} s, CPU {m['cpu']:.1f} s, peak RSS "
            f"{m['peak_rss_mb']:.0f} MB | wall/CPU s: itk import {s['itk_load']:.1f}{cpu('itk_load')}, "
            f"guard {s['guard_before']:.1f}{cpu('guard_before')}, elastix {s['atlas_registration']:.1f}"
            f"{cpu('atlas_registration')} ({stage_text}), "
            f"warp {s['warp']:.1f}{cpu('warp')}, rest {m['wall'] - s['total']:.1f} | Dice major mean "
            f"{d['major_mean']:.3f} (min {min(d['major'].values()):.3f}), leaves median {d['leaf_median']:.3f} "
            f"(mean {d['leaf_mean']:.3f}, {d['n_leaves']} labels), brain {d['brain']:.3f}",
            flush=True,
        )
        runs.append({**m, "dice": d, "stages": stages, "load": load})
    med = lambda f: float(np.median([f(x) for x in runs]))  # noqa: E731
    print(
        f"median of {repeat}: task wall {med(lambda x: x['wall']):.1f} s, CPU {med(lambda x: x['cpu']):.1f} s, "
        f"peak RSS {med(lambda x: x['peak_rss_mb']):.0f} MB; Dice major {runs[0]['dice']['major_mean']:.3f}, "
        f"leaves median {runs[0]['dice']['leaf_median']:.3f}"
    )
    print("major divisions: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[0]["dice"]["major"].items()))


def bench_points(n: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_transforms import (
        full_chain,  # a demo-sized affine + B-spline chain with correction
    )

    T = full_chain(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    raw = np.column_stack([rng.uniform(0, s - 1, n) for s in T.grids["signal"].raw_shape])
    base = peak_rss_mb()
    t0 = time.perf_counter()
    a = T.sample_to_atlas(raw, "signal")
    t1 = time.perf_counter()
    back = T.atlas_to_sample(a, "signal")
    t2 = time.perf_counter()
    err = np.linalg.norm(back - raw, axis=1)
    print(
        f"{n} points: sample->atlas {t1 - t0:.1f} s, atlas->sample {t2 - t1:.1f} s, round trip max error "
        f"{np.nanmax(err):.2e} raw voxels; peak RSS {peak_rss_mb():.0f} MB (points alone "
        f"{raw.nbytes * 3 / 1e6:.0f} MB, before {base:.0f} MB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("resample")
    r.add_argument("--planes", type=int, default=400)
    r.add_argument("--size", type=int, default=1024)
    d = sub.add_parser("demo")
    d.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("points")
    p.add_argument("--n", type=int, default=5_000_000)
    a = sub.add_parser("allen")
    a.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / "out" / "allen")
    a.add_argument("--repeat", type=int, default=3)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--registration", default="", help="steps.registration overrides as JSON")
    t = sub.add_parser("_allen_task")  # internal: one register task in a fresh process
    t.add_argument("cache", type=Path)
    t.add_argument("out", type=Path)
    t.add_argument("threads", type=int)
    t.add_argument("registration")
    args = ap.parse_args()
    if args.what == "allen":
        bench_allen(args.cache, args.repeat, args.threads, args.registration, args.seed)
        return
    if args.what == "_allen_task":
        import json

        case = json.loads((args.cache / "case.json").read_text())
        print(json.dumps(run_register_task(case, args.out, args.threads, json.loads(args.registration))))
        return
    if args.what == "resample":
        bench_resample(args.planes, args.size)
    elif args.what == "demo":
        bench_demo(args.threads)
    else:
        bench_points(args.n)


if __name__ == "__main__":
    main()
