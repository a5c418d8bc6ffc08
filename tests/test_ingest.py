"""Ingest: a source volume streamed into an OME-Zarr image (level 0 + pyramid)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import zarr

from spimflow.config import Channel, Crop, IngestParams, MhdSource, PatternSource
from spimflow.errors import InputFileError
from spimflow.io.readers import VolumeReader, open_source
from spimflow.steps.ingest import ingest_channel, voxel_size_mismatch
from spimflow.tasks import ingest as ingest_task

SHAPE = (37, 130, 150)  # several slabs of planes; y/x large enough for 3 pyramid levels
VOXEL = (6.0, 2.0, 2.0)


def volume(shape=SHAPE, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    return (50 * z + 3 * y + x + rng.integers(0, 20, shape)).astype(np.uint16)


VOL = volume()


def write_planes(folder: Path, vol: np.ndarray = VOL) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for z, plane in enumerate(vol):
        tifffile.imwrite(folder / f"Z{z:04d}.tif", plane)


def pooled_reference(vol: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Mean over factor-sized blocks, with edge blocks averaged over the voxels that exist."""
    total, count = vol.astype(np.float64), np.ones(vol.shape)
    for axis, f in enumerate(factor):
        starts = np.arange(0, vol.shape[axis], f)
        total = np.add.reduceat(total, starts, axis=axis)
        count = np.add.reduceat(count, starts, axis=axis)
    return total / count


def test_ingest_pattern_end_to_end(tmp_path):
    write_planes(tmp_path / "planes")
    src = PatternSource(format="pattern", path=r"planes/Z\d{4}.tif")
    out = tmp_path / "raw" / "signal.ome.zarr"
    with open_source(src, tmp_path) as reader:
        ingest_channel(
            reader,
            out,
            VOXEL,
            chunks=(8, 32, 32),
            n_levels=3,
            name="signal",
            source=src.model_dump(mode="json"),
            orientation="ipl",
        )
    g = zarr.open_group(str(out), mode="r")
    ms = g.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    scale0 = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
    assert scale0 == pytest.approx(VOXEL)
    np.testing.assert_array_equal(g["0"][...], VOL)
    assert g["0"].dtype == np.uint16 and g["0"].chunks == (8, 32, 32)
    # z voxel (6 µm) is coarser than 2× the in-plane (2 µm): only y and x are halved
    assert len(ms["datasets"]) == 3
    assert g["1"].shape == (37, 65, 75) and g["2"].shape == (37, 33, 38)
    scale2 = next(t["scale"] for t in ms["datasets"][2]["coordinateTransformations"] if t["type"] == "scale")
    assert scale2 == pytest.approx((6.0, 8.0, 8.0))
    np.testing.assert_allclose(g["1"][...], pooled_reference(VOL, (1, 2, 2)), atol=0.5)
    # level 2 is pooled from level 1 (rounded), so compare within one rounding step
    np.testing.assert_allclose(g["2"][...], pooled_reference(VOL, (1, 4, 4)), atol=1.0)
    meta = g.attrs["spimflow"]
    assert meta["source"] == {"format": "pattern", "path": r"planes/Z\d{4}.tif", "allow_gaps": False}
    assert meta["voxel_size"] == list(VOXEL) and meta["orientation"] == "ipl"
    assert meta["reader"]["n_files"] == SHAPE[0]
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporaries left


def test_ingest_with_crop_and_z_pooling(tmp_path):
    vol = volume((66, 70, 72), seed=2)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(tmp_path / "v.mhd"))
    crop = Crop(z=(1, 65), y=(4, 70), x=(1, 71))
    out = tmp_path / "c.ome.zarr"
    with open_source(MhdSource(format="mhd", path="v.mhd"), tmp_path, crop=crop) as reader:
        ingest_channel(reader, out, (2.0, 2.0, 2.0), chunks=(4, 64, 64), n_levels=2)
    g = zarr.open_group(str(out), mode="r")
    expected = vol[1:65, 4:70, 1:71]
    np.testing.assert_array_equal(g["0"][...], expected)
    assert g["1"].shape == (32, 33, 35)  # isotropic: z is halved too
    np.testing.assert_allclose(g["1"][...], pooled_reference(expected, (2, 2, 2)), atol=0.5)


class CountingReader(VolumeReader):
    """A real in-memory volume behind the reader interface, recording the largest read."""

    format = "memory"

    def __init__(self, vol: np.ndarray, fail_at: int | None = None):
        self.vol, self.fail_at, self.largest = vol, fail_at, 0
        super().__init__("memory", vol.shape, vol.dtype)

    def _read_raw(self, z, y, x):
        self.largest = max(self.largest, (z[1] - z[0]) * (y[1] - y[0]) * (x[1] - x[0]))
        if self.fail_at is not None and z[0] <= self.fail_at < z[1]:
            raise InputFileError(f"plane {self.fail_at} is corrupt")
        return self.vol[z[0] : z[1], y[0] : y[1], x[0] : x[1]]


def test_ingest_reads_one_slab_at_a_time(tmp_path):
    reader = CountingReader(VOL)
    ingest_channel(reader, tmp_path / "o.ome.zarr", VOXEL, chunks=(5, 32, 32), n_levels=1)
    assert reader.largest == 5 * SHAPE[1] * SHAPE[2]
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r")["0"][...], VOL)


def test_failed_ingest_leaves_no_output(tmp_path):
    write_planes(tmp_path / "planes")
    f = tmp_path / "planes" / "Z0020.tif"
    tifffile.imwrite(f, VOL[20], compression="zlib")  # header fine at open; pixels corrupted after open
    out = tmp_path / "raw" / "signal.ome.zarr"
    with open_source(PatternSource(format="pattern", path=r"planes/Z\d{4}.tif"), tmp_path) as reader:
        raw = bytearray(f.read_bytes())
        raw[-300:-10] = b"\x00" * 290
        f.write_bytes(bytes(raw))
        with pytest.raises(InputFileError, match=r"Z0020\.tif"):
            ingest_channel(reader, out, VOXEL, chunks=(8, 32, 32), n_levels=2)
    assert not out.exists()
    assert list((tmp_path / "raw").iterdir()) == []


def test_failed_ingest_keeps_previous_complete_output(tmp_path):
    out = tmp_path / "o.ome.zarr"
    ingest_channel(CountingReader(VOL), out, VOXEL, chunks=(8, 32, 32), n_levels=1)
    with pytest.raises(InputFileError):
        ingest_channel(CountingReader(VOL + 1, fail_at=30), out, VOXEL, chunks=(8, 32, 32), n_levels=1)
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["0"][...], VOL)
    assert [p.name for p in tmp_path.iterdir()] == ["o.ome.zarr"]


def test_voxel_size_mismatch():
    assert not voxel_size_mismatch((5, 2, 2), None)
    assert not voxel_size_mismatch((5, 2, 2), (5.001, 2, 2))
    assert voxel_size_mismatch((5, 2, 2), (2, 2, 5))
    assert voxel_size_mismatch((5, 2, 2), (5, 2.1, 2))


def make_smk(tmp_path: Path, channel: dict, out: Path, chunks=(8, 32, 32), levels=2) -> SimpleNamespace:
    return SimpleNamespace(
        input=[],
        output=[str(out)],
        log=[],
        threads=1,
        rule="ingest",
        wildcards=SimpleNamespace(channel="signal"),
        params=SimpleNamespace(
            task="ingest",
            channel=channel,
            ingest=IngestParams(chunks=chunks, pyramid_levels=levels).model_dump(mode="json"),
        ),
    )


def test_task_run_with_a_snakemake_like_object(tmp_path, monkeypatch, caplog):
    """tasks.ingest.run resolves relative source paths against the working directory."""
    img = sitk.GetImageFromArray(VOL)
    img.SetSpacing((3.0, 3.0, 9.0))  # header (x, y, z) = (3, 3, 9): disagrees with config (6, 2, 2)
    sitk.WriteImage(img, str(tmp_path / "vol.nrrd"))
    channel = Channel(
        source={"format": "nrrd", "path": "vol.nrrd"}, voxel_size=VOXEL, orientation=[1, -2, 3], crop={"z": [0, 30]}
    )
    monkeypatch.chdir(tmp_path)
    out = Path("results/s1/raw/signal.ome.zarr")
    with caplog.at_level(logging.WARNING):
        ingest_task.run(make_smk(tmp_path, channel.model_dump(mode="json"), out))
    assert "channels.signal.voxel_size" in caplog.text and "(9.0, 3.0, 3.0)" in caplog.text
    g = zarr.open_group(str(tmp_path / out), mode="r")
    np.testing.assert_array_equal(g["0"][...], VOL[:30])
    assert g.attrs["spimflow"]["orientation"] == [1, -2, 3]
    assert g.attrs["spimflow"]["source"]["path"] == "vol.nrrd"
    assert g.attrs["ome"]["multiscales"][0]["name"] == "signal"


def test_task_run_bad_source_raises_input_file_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    channel = {"source": {"format": "tiff", "path": "missing.tif"}, "voxel_size": [1, 1, 1], "orientation": "asr"}
    with pytest.raises(InputFileError, match=r"missing\.tif"):
        ingest_task.run(make_smk(tmp_path, channel, Path("out.ome.zarr")))
    assert not Path("out.ome.zarr").exists()


def test_a_plane_of_nan_is_an_error_naming_the_plane(tmp_path):
    vol = VOL[:12].astype(np.float32)
    vol[7] = np.nan
    write_planes(tmp_path / "planes", vol)
    out = tmp_path / "raw" / "signal.ome.zarr"
    with open_source(PatternSource(format="pattern", path=r"planes/Z\d{4}.tif"), tmp_path) as reader:
        with pytest.raises(InputFileError, match=r"Z0007\.tif: plane z=7 holds 19500 NaN or infinite"):
            ingest_channel(reader, out, VOXEL, chunks=(4, 32, 32), n_levels=1)
    assert not out.exists()


def test_a_single_plane_is_not_a_volume(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", VOL[0])
    from spimflow.config import TiffSource

    with open_source(TiffSource(format="tiff", path="one.tif"), tmp_path) as reader:
        with pytest.raises(InputFileError, match=r"one\.tif: the volume has shape \(1, 130, 150\), 1 z plane"):
            ingest_channel(reader, tmp_path / "o.ome.zarr", VOXEL)
    assert not (tmp_path / "o.ome.zarr").exists()
