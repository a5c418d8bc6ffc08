"""Readers: the same small volume written in every input format reads back identically.

The volume is 7×33×45 uint16 with a value that encodes (z, y, x) (no symmetry), so
any axis swap, flip, plane reordering or off-by-one shows up as a mismatch.
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import zarr

from spimflow.config import (
    Crop,
    FolderSource,
    ImarisSource,
    MhdSource,
    NrrdSource,
    PatternSource,
    TiffSource,
    ZarrSource,
)
from spimflow.errors import InputFileError
from spimflow.io.ims_reader import ims_attr
from spimflow.io.omezarr import write_ome_zarr
from spimflow.io.readers import natural_key, open_source
from spimflow.io.tiff_readers import list_pattern_files

SHAPE = (7, 33, 45)
VOXEL = (4.0, 1.5, 2.5)  # (z, y, x) µm, all different so an order mixup shows


def make_volume() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return (1000 * z + 31 * y + x + 7 * (y * x % 5)).astype(np.uint16)


VOL = make_volume()


# -- writers for each format (what real instruments and tools produce) ---------------------


def write_tiff(d: Path, **kw) -> TiffSource:
    tifffile.imwrite(d / "stack.tif", VOL, **kw)
    return TiffSource(format="tiff", path="stack.tif")


def write_pattern(d: Path) -> PatternSource:
    """Unpadded numbers, so lexicographic order (Z10 < Z2) differs from z order."""
    (d / "planes").mkdir()
    for z in range(SHAPE[0]):
        tifffile.imwrite(d / "planes" / f"Z{z + 5}.ome.tif", VOL[z])
    (d / "planes" / "notes.txt").write_text("not a plane")
    return PatternSource(format="pattern", path=r"planes/Z\d+.ome.tif")


def write_folder(d: Path) -> FolderSource:
    (d / "folder").mkdir()
    for z in range(SHAPE[0]):
        tifffile.imwrite(d / "folder" / f"plane_{z + 8}.tif", VOL[z])
    (d / "folder" / "readme.md").write_text("ignored")
    return FolderSource(format="folder", path="folder")


def write_itk(d: Path, name: str, compress: bool = False) -> Path:
    img = sitk.GetImageFromArray(VOL)  # numpy (z, y, x) -> ITK (x, y, z)
    img.SetSpacing(VOXEL[::-1])  # ITK spacing is (x, y, z)
    sitk.WriteImage(img, str(d / name), compress)
    return Path(name)


def write_ims(d: Path, pad: tuple[int, int, int] = (1, 7, 3)) -> ImarisSource:
    """Imaris 5.5 layout: chunk-padded Data and sizes as arrays of single characters."""

    def chars(v) -> np.ndarray:
        return np.array(list(str(v)), dtype="S1")

    with h5py.File(d / "brain.ims", "w") as f:
        f.attrs["ImarisVersion"] = chars("5.5.0")
        info = f.create_group("DataSetInfo/Image")
        for a, n in zip("ZYX", SHAPE):
            info.attrs[a] = chars(n)
        for i, (n, v) in enumerate(zip(SHAPE[::-1], VOXEL[::-1])):  # ExtMin0/ExtMax0 are x
            info.attrs[f"ExtMin{i}"] = chars(-3.5)
            info.attrs[f"ExtMax{i}"] = chars(-3.5 + n * v)
        for r, vol in enumerate([VOL, VOL[:, ::2, ::2]]):
            for c in range(2):
                g = f.create_group(f"DataSet/ResolutionLevel {r}/TimePoint 0/Channel {c}")
                padded = np.full(tuple(s + p for s, p in zip(vol.shape, pad)), 60000, np.uint16)
                padded[: vol.shape[0], : vol.shape[1], : vol.shape[2]] = vol + c
                g.create_dataset("Data", data=padded, chunks=(2, 8, 16), compression="gzip")
                for a, n in zip("ZYX", vol.shape):
                    g.attrs[f"ImageSize{a}"] = chars(n)
    return ImarisSource(format="ims", path="brain.ims")


def write_zarr_array(d: Path, zarr_format: int) -> ZarrSource:
    arr = zarr.create_array(
        str(d / f"v{zarr_format}.zarr"),
        shape=SHAPE,
        dtype=">u2" if zarr_format == 2 else "u2",
        chunks=(2, 16, 16),
        zarr_format=zarr_format,
    )
    arr[...] = VOL
    return ZarrSource(format="zarr", path=f"v{zarr_format}.zarr")


def write_ome_v2(d: Path) -> ZarrSource:
    """NGFF 0.4 on zarr v2: 5D (t, c, z, y, x) with singleton t, c; scale in millimetres."""
    g = zarr.open_group(str(d / "img04.ome.zarr"), mode="w", zarr_format=2)
    a = g.create_array("s0", shape=(1, 1) + SHAPE, dtype="u2", chunks=(1, 1, 3, 16, 16))
    a[...] = VOL[None, None]
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
            + [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"],
            "datasets": [
                {
                    "path": "s0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0] + [v / 1000 for v in VOXEL]}],
                }
            ],
        }
    ]
    return ZarrSource(format="zarr", path="img04.ome.zarr")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("formats")
    write_ome_zarr(d / "img.ome.zarr", VOL, VOXEL, chunks=(3, 16, 16), n_levels=1)
    tifffile.imwrite(d / "compressed.tif", VOL, compression="zlib")
    sources = {
        "tiff": write_tiff(d),
        "tiff_zlib": TiffSource(format="tiff", path="compressed.tif"),
        "pattern": write_pattern(d),
        "folder": write_folder(d),
        "nrrd": NrrdSource(format="nrrd", path=write_itk(d, "vol.nrrd")),
        "nrrd_gzip": NrrdSource(format="nrrd", path=write_itk(d, "volgz.nrrd", compress=True)),
        "mhd": MhdSource(format="mhd", path=write_itk(d, "vol.mhd")),
        "ims": write_ims(d),
        "zarr_v2": write_zarr_array(d, 2),
        "zarr_v3": write_zarr_array(d, 3),
        "ome_zarr_v3": ZarrSource(format="zarr", path="img.ome.zarr"),
        "ome_zarr_v2": write_ome_v2(d),
    }
    return d, sources


ALL = [
    "tiff",
    "tiff_zlib",
    "pattern",
    "folder",
    "nrrd",
    "nrrd_gzip",
    "mhd",
    "ims",
    "zarr_v2",
    "zarr_v3",
    "ome_zarr_v3",
    "ome_zarr_v2",
]
WITH_VOXEL = ["nrrd", "nrrd_gzip", "mhd", "ims", "ome_zarr_v3", "ome_zarr_v2"]


@pytest.mark.parametrize("kind", ALL)
def test_every_format_reads_back_identically(data, kind):
    d, sources = data
    with open_source(sources[kind], base_dir=d) as r:
        assert r.shape == SHAPE
        assert r.dtype == np.dtype("uint16") and r.dtype.isnative
        full = r.read(0, SHAPE[0])
        assert full.dtype.isnative
        np.testing.assert_array_equal(full, VOL)


@pytest.mark.parametrize("kind", ALL)
def test_sub_range_reads_equal_slices_of_the_full_array(data, kind):
    d, sources = data
    with open_source(sources[kind], base_dir=d) as r:
        for z0, z1 in [(0, 1), (2, 5), (6, 7), (3, 3)]:
            np.testing.assert_array_equal(r.read(z0, z1), VOL[z0:z1])
        np.testing.assert_array_equal(r.read(1, 6, slice(4, 30), slice(10, 44)), VOL[1:6, 4:30, 10:44])
        np.testing.assert_array_equal(r[5], VOL[5])
        np.testing.assert_array_equal(r[2:7:2, -5:, ::3], VOL[2:7:2, -5:, ::3])
        np.testing.assert_array_equal(r[..., 7], VOL[..., 7])
        np.testing.assert_array_equal(r[::-2, 3, 9:1:-3], VOL[::-2, 3, 9:1:-3])
        # going back after reading further on (the gzip stream has to restart)
        np.testing.assert_array_equal(r.read(0, 2), VOL[0:2])


@pytest.mark.parametrize("kind", ALL)
def test_crop_reads_the_cropped_region(data, kind):
    d, sources = data
    crop = Crop(z=(2, 6), y=(5, 30), x=None)
    with open_source(sources[kind], base_dir=d, crop=crop) as r:
        expected = VOL[2:6, 5:30, :]
        assert r.shape == expected.shape
        np.testing.assert_array_equal(r.read(0, 4), expected)
        np.testing.assert_array_equal(r.read(1, 3, slice(2, 9), slice(40, None)), expected[1:3, 2:9, 40:])


@pytest.mark.parametrize("kind", WITH_VOXEL)
def test_file_voxel_size_is_reported_in_zyx_order(data, kind):
    d, sources = data
    with open_source(sources[kind], base_dir=d) as r:
        assert r.file_voxel_size == pytest.approx(VOXEL, rel=1e-6)


def test_ome_tiff_and_imagej_voxel_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        VOL,
        metadata={"axes": "ZYX", "PhysicalSizeZ": VOXEL[0], "PhysicalSizeY": VOXEL[1], "PhysicalSizeX": VOXEL[2]},
    )
    tifffile.imwrite(
        tmp_path / "ij.tif",
        VOL,
        imagej=True,
        resolution=(1 / VOXEL[2], 1 / VOXEL[1]),
        metadata={"spacing": VOXEL[0], "unit": "um", "axes": "ZYX"},
    )
    for name in ("a.ome.tif", "ij.tif"):
        with open_source(TiffSource(format="tiff", path=name), tmp_path) as r:
            np.testing.assert_array_equal(r.read(0, 7), VOL)
            assert r.file_voxel_size == pytest.approx(VOXEL, rel=1e-4)
    with open_source(TiffSource(format="tiff", path="stack.tif"), base_dir=write_dir(tmp_path)) as r:
        assert r.file_voxel_size is None


def write_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plain"
    d.mkdir()
    write_tiff(d)
    return d


def test_big_endian_tiff_reads_native(tmp_path):
    tifffile.imwrite(tmp_path / "be.tif", VOL, byteorder=">")
    with open_source(TiffSource(format="tiff", path="be.tif"), tmp_path) as r:
        out = r.read(0, 7)
        assert out.dtype.isnative
        np.testing.assert_array_equal(out, VOL)


def test_imaris_other_level_channel_and_padding_ignored(data):
    d, _ = data
    src = ImarisSource(format="ims", path="brain.ims", resolution_level=1, channel=1)
    with open_source(src, d) as r:
        expected = VOL[:, ::2, ::2] + 1
        assert r.shape == expected.shape
        np.testing.assert_array_equal(r.read(0, 7), expected)
        assert r.file_voxel_size == pytest.approx((VOXEL[0], VOXEL[1] * 33 / 17, VOXEL[2] * 45 / 23))
    with pytest.raises(InputFileError, match=r"brain\.ims.*Channel 5.*source\.channel.*\[0, 1\]"):
        open_source(ImarisSource(format="ims", path="brain.ims", channel=5), d)


def test_ims_attr_decodes_single_char_arrays():
    assert ims_attr({"X": np.array([b"4", b"5"], dtype="S1")}, "X") == "45"
    assert ims_attr({"X": b"12.5"}, "X") == "12.5"
    assert ims_attr({"X": np.array([3])}, "X") == "3"
    assert ims_attr({}, "X") is None


def test_natural_order_and_explicit_z_group(tmp_path):
    assert sorted(["Z10.tif", "Z9.tif", "z100.tif", "Z1.tif"], key=natural_key) == [
        "Z1.tif",
        "Z9.tif",
        "Z10.tif",
        "z100.tif",
    ]
    for z in (0, 1, 2, 10):
        (tmp_path / f"img_z{z}_c01.tif").write_bytes(b"")
    files = list_pattern_files(r"img_z(?P<z>\d+)_c01\.tif", tmp_path, allow_gaps=True)
    assert [f.name for f in files] == [f"img_z{z}_c01.tif" for z in (0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 10)]


def test_a_gap_in_the_plane_numbers_is_an_error_unless_allowed(tmp_path):
    for z in (0, 1, 2, 5, 6):
        tifffile.imwrite(tmp_path / f"Z{z:04d}.tif", np.full((4, 5), z + 1, np.uint16))
    with pytest.raises(InputFileError, match=r"gaps \(missing 3-4\).*allow_gaps: true"):
        list_pattern_files(r"Z\d{4}\.tif", tmp_path)
    src = PatternSource(format="pattern", path=r"Z\d{4}\.tif", allow_gaps=True)
    vol = np.asarray(open_source(src, tmp_path)[:])
    # every plane keeps its true z: plane 5 is still z = 5, the gap repeats plane 2
    assert vol.shape == (7, 4, 5)
    assert vol[:, 0, 0].tolist() == [1, 2, 3, 3, 3, 6, 7]


# -- bad input ------------------------------------------------------------------------------------


def test_missing_files_name_the_path(tmp_path):
    cases = [
        TiffSource(format="tiff", path="nope.tif"),
        NrrdSource(format="nrrd", path="nope.nrrd"),
        MhdSource(format="mhd", path="nope.mhd"),
        ImarisSource(format="ims", path="nope.ims"),
        ZarrSource(format="zarr", path="nope.zarr"),
        FolderSource(format="folder", path="nodir"),
    ]
    for src in cases:
        with pytest.raises(InputFileError, match=str(Path(src.path).name).replace(".", r"\.")):
            open_source(src, tmp_path)


def test_pattern_matching_nothing_names_folder_and_regex(data):
    d, _ = data
    with pytest.raises(InputFileError) as err:
        open_source(PatternSource(format="pattern", path=r"planes/C\d+.tif"), d)
    assert str(d / "planes") in str(err.value) and r"C\d+.tif" in str(err.value)


def test_plane_of_different_shape_or_dtype_is_named(tmp_path):
    (tmp_path / "p").mkdir()
    for z in range(4):
        tifffile.imwrite(tmp_path / "p" / f"Z{z}.tif", VOL[z])
    tifffile.imwrite(tmp_path / "p" / "Z2.tif", VOL[2, :30])
    with pytest.raises(InputFileError) as err:
        open_source(PatternSource(format="pattern", path=r"p/Z\d.tif"), tmp_path)
    msg = str(err.value)
    assert "Z2.tif" in msg and "(30, 45)" in msg and "(33, 45)" in msg
    tifffile.imwrite(tmp_path / "p" / "Z2.tif", VOL[2].astype(np.float32))
    with pytest.raises(InputFileError, match=r"Z2\.tif.*float32.*uint16"):
        open_source(FolderSource(format="folder", path="p"), tmp_path)


def truncate(path: Path, n: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-n])


def test_truncated_plane_file_is_named_at_open(tmp_path):
    (tmp_path / "p").mkdir()
    for z in range(5):
        tifffile.imwrite(tmp_path / "p" / f"Z{z:02d}.tif", VOL[z])
    truncate(tmp_path / "p" / "Z03.tif", 100)
    with pytest.raises(InputFileError, match=r"Z03\.tif.*truncated"):
        open_source(PatternSource(format="pattern", path=r"p/Z\d+.tif"), tmp_path)


def test_plane_corrupted_after_open_is_named_when_read(tmp_path):
    (tmp_path / "p").mkdir()
    for z in range(5):
        tifffile.imwrite(tmp_path / "p" / f"Z{z:02d}.tif", VOL[z], compression="zlib")
    with open_source(FolderSource(format="folder", path="p"), tmp_path) as r:
        np.testing.assert_array_equal(r.read(0, 2), VOL[:2])
        f = tmp_path / "p" / "Z03.tif"
        raw = bytearray(f.read_bytes())
        raw[-400:-20] = os.urandom(380)  # garbage in the compressed pixel data
        f.write_bytes(bytes(raw))
        with pytest.raises(InputFileError, match=r"Z03\.tif.*z = 3"):
            r.read(2, 5)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_multipage_tiff_is_detected_at_open(tmp_path, compression):
    tifffile.imwrite(tmp_path / "s.tif", VOL, compression=compression)
    truncate(tmp_path / "s.tif", 300)
    with pytest.raises(InputFileError, match=r"s\.tif.*(truncated|corrupt)"):
        open_source(TiffSource(format="tiff", path="s.tif"), tmp_path)


def test_garbage_files_are_input_file_errors(tmp_path):
    (tmp_path / "x.nrrd").write_bytes(os.urandom(2000))
    (tmp_path / "x.mhd").write_text("this is not a header\n")
    (tmp_path / "x.ims").write_bytes(os.urandom(2000))
    (tmp_path / "x.tif").write_bytes(os.urandom(2000))
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text("{not json")
    for src in [
        NrrdSource(format="nrrd", path="x.nrrd"),
        MhdSource(format="mhd", path="x.mhd"),
        ImarisSource(format="ims", path="x.ims"),
        TiffSource(format="tiff", path="x.tif"),
        ZarrSource(format="zarr", path="x.zarr"),
    ]:
        with pytest.raises(InputFileError, match=str(src.path).replace(".", r"\.")):
            open_source(src, tmp_path)


def test_truncated_nrrd_mhd_and_gzip_nrrd(tmp_path):
    write_itk(tmp_path, "t.nrrd")
    truncate(tmp_path / "t.nrrd", 500)
    with pytest.raises(InputFileError, match=r"t\.nrrd.*truncated"):
        open_source(NrrdSource(format="nrrd", path="t.nrrd"), tmp_path)
    write_itk(tmp_path, "t.mhd")
    truncate(tmp_path / "t.raw", 500)
    with pytest.raises(InputFileError, match=r"t\.raw.*truncated"):
        open_source(MhdSource(format="mhd", path="t.mhd"), tmp_path)
    write_itk(tmp_path, "g.nrrd", compress=True)
    truncate(tmp_path / "g.nrrd", 200)
    with open_source(NrrdSource(format="nrrd", path="g.nrrd"), tmp_path) as r:
        with pytest.raises(InputFileError, match=r"g\.nrrd"):
            r.read(0, 7)


def _nhdr(extra: str) -> str:
    return "NRRD0004\n# comment\ntype: unsigned short\ndimension: 3\nsizes: 45 33 7\nmy key:=some value\n" + extra


NHDR_CASES = {
    # detached gzip data, big endian, spacings field
    "gzip": (
        _nhdr("endian: big\nencoding: gzip\nspacings: 2.5 1.5 4\ndata file: d.raw.gz\n"),
        gzip.compress(VOL.astype(">u2").tobytes()),
    ),
    # detached raw data at the end of a file with a junk prefix (byte skip -1), space directions
    "raw_skip": (
        _nhdr(
            "endian: little\nencoding: raw\nspace: left-posterior-superior\n"
            "space directions: (0,2.5,0) (1.5,0,0) (0,0,-4)\nbyte skip: -1\ndata file: d.raw.gz\n"
        ),
        b"junk header of another tool\n" + VOL.astype("<u2").tobytes(),
    ),
    # ascii encoding (read whole through SimpleITK), two lines to skip first
    "ascii": (
        _nhdr("encoding: ascii\nspacings: 2.5 1.5 4\nline skip: 2\ndata file: d.raw.gz\n"),
        b"skip me\nand me\n" + " ".join(map(str, VOL.ravel())).encode() + b"\n",
    ),
}


@pytest.mark.parametrize("case", NHDR_CASES)
def test_detached_nrrd_with_header_we_write_ourselves(tmp_path, case):
    """Hand-written NRRD headers (the variants other tools write), each read back identically."""
    header, payload = NHDR_CASES[case]
    (tmp_path / "d.raw.gz").write_bytes(payload)
    (tmp_path / "d.nhdr").write_text(header)
    with open_source(NrrdSource(format="nrrd", path="d.nhdr"), tmp_path) as r:
        np.testing.assert_array_equal(r.read(0, 7), VOL)
        np.testing.assert_array_equal(r.read(3, 5, slice(1, 4)), VOL[3:5, 1:4])
        np.testing.assert_array_equal(r.read(1, 2), VOL[1:2])
        assert r.file_voxel_size == pytest.approx(VOXEL)


def test_crop_outside_volume_names_key_and_shape(data):
    d, sources = data
    with pytest.raises(InputFileError) as err:
        open_source(sources["tiff"], d, crop=Crop(y=(10, 40)))
    assert "crop.y" in str(err.value) and "(7, 33, 45)" in str(err.value) and "stack.tif" in str(err.value)
    with pytest.raises(InputFileError, match=r"crop\.z"):
        open_source(sources["pattern"], d, crop=Crop(z=(7, 9)))


def test_zarr_group_without_multiscales_needs_array(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", shape=SHAPE, dtype="u2")[...] = VOL
    with pytest.raises(InputFileError, match=r"g\.zarr.*source\.array.*raw"):
        open_source(ZarrSource(format="zarr", path="g.zarr"), tmp_path)
    with open_source(ZarrSource(format="zarr", path="g.zarr", array="raw"), tmp_path) as r:
        np.testing.assert_array_equal(r.read(0, 7), VOL)
    with pytest.raises(InputFileError, match=r"no array 'other'"):
        open_source(ZarrSource(format="zarr", path="g.zarr", array="other"), tmp_path)


def _peak_traced_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["tiff", "tiff_zlib", "pattern", "nrrd", "nrrd_gzip"])
def test_reading_one_plane_allocates_about_one_plane(tmp_path, kind):
    """Range reads must not load the volume: a 16 MB stack, one 256 KB plane read, < 2 MiB allocated.

    (numpy allocations are visible to tracemalloc; the SimpleITK/h5py/zarr readers delegate
    range reads to those libraries.)"""
    big = np.random.default_rng(0).integers(0, 4000, (64, 256, 512)).astype(np.uint16)
    if kind.startswith("tiff"):
        tifffile.imwrite(tmp_path / "b.tif", big, compression="zlib" if kind == "tiff_zlib" else None)
        src = TiffSource(format="tiff", path="b.tif")
    elif kind == "pattern":
        for z, plane in enumerate(big):
            tifffile.imwrite(tmp_path / f"P{z}.tif", plane)
        src = PatternSource(format="pattern", path=r"P\d+.tif")
    else:
        sitk.WriteImage(sitk.GetImageFromArray(big), str(tmp_path / "b.nrrd"), kind == "nrrd_gzip")
        src = NrrdSource(format="nrrd", path="b.nrrd")
    with open_source(src, tmp_path) as r:
        out = {}
        peak = _peak_traced_bytes(lambda: out.setdefault("plane", r.read(40, 41)))
        np.testing.assert_array_equal(out["plane"], big[40:41])
        assert peak < 2 * 2**20, f"reading one plane allocated {peak / 2**20:.1f} MiB"


# -- real files written by another tool (ClearMap's synthetic test stack) --------------------------


@pytest.mark.shared
def test_clearmap_planes_read_as_pattern_and_folder(shared_data):
    planes = shared_data / "clearmap_synthetic" / "planes"
    files = sorted(planes.glob("test_iDISCO_*.tif"))
    expected = np.stack([tifffile.imread(f) for f in files])
    assert expected.shape == (40, 160, 180)
    for src in (
        PatternSource(format="pattern", path=r"planes/test_iDISCO_\d{3}.tif"),
        FolderSource(format="folder", path="planes"),
    ):
        with open_source(src, base_dir=planes.parent, crop=Crop(z=(2, 38), x=(100, 160))) as r:
            assert r.shape == (36, 160, 60) and r.dtype == expected.dtype
            np.testing.assert_array_equal(r.read(0, 36), expected[2:38, :, 100:160])
