"""Orientation: both notations, all 48 permutations/flips, checked against volumes built
here from anatomical positions (independently of :mod:`spimflow.orientation`)."""

import itertools

import numpy as np
import pytest

from spimflow.errors import ConfigError
from spimflow.orientation import Orientation

# canonical start of each anatomical pair; letter == start -> index counts from that side
_START = {"ap": "a", "si": "s", "lr": "r"}
_PAIR = {"a": "ap", "p": "ap", "s": "si", "i": "si", "l": "lr", "r": "lr"}


def all_codes():
    """All 48 BrainGlobe origin codes."""
    out = []
    for pairs in itertools.permutations(["ap", "si", "lr"]):
        for signs in itertools.product([0, 1], repeat=3):
            out.append("".join(p[s] for p, s in zip(pairs, signs)))
    return out


def all_signed_perms():
    """All 48 ClearMap signed permutations (x, y, z order)."""
    return [
        tuple(s * a for s, a in zip(signs, perm))
        for perm in itertools.permutations([1, 2, 3])
        for signs in itertools.product([1, -1], repeat=3)
    ]


def anatomical_positions(code, shape):
    """For every voxel of a volume declared with ``code``: its position (in voxels) counted
    from the anterior, superior and right sides. Returns {pair: int array of shape}."""
    idx = np.indices(shape)
    pos = {}
    for axis, letter in enumerate(code):
        pair = _PAIR[letter]
        pos[pair] = idx[axis] if letter == _START[pair] else shape[axis] - 1 - idx[axis]
    return pos


def volume_in_code(atlas, atlas_code, sample_code):
    """The atlas volume as a sample declared with ``sample_code`` would store it."""
    lengths = {_PAIR[c]: n for c, n in zip(atlas_code, atlas.shape)}
    shape = tuple(lengths[_PAIR[c]] for c in sample_code)
    sample_pos = anatomical_positions(sample_code, shape)
    atlas_index = []
    for letter in atlas_code:
        pair = _PAIR[letter]
        n = lengths[pair]
        atlas_index.append(sample_pos[pair] if letter == _START[pair] else n - 1 - sample_pos[pair])
    return atlas[tuple(atlas_index)]


def volume_in_clearmap(atlas, signed_xyz):
    """A sample for which ClearMap's orientation ``signed_xyz`` maps it onto ``atlas``:
    atlas ClearMap axis k (x=0, y=1, z=2) is sample axis |v_k|, reversed when v_k < 0.
    ClearMap axis k is our array axis 2 - k."""
    sample_axis_of = {2 - k: 3 - abs(v) for k, v in enumerate(signed_xyz)}  # ours: atlas axis -> sample axis
    reversed_ = {2 - k: v < 0 for k, v in enumerate(signed_xyz)}
    shape = [0, 0, 0]
    for a, s in sample_axis_of.items():
        shape[s] = atlas.shape[a]
    sidx = np.indices(shape)
    aidx = [None, None, None]
    for a, s in sample_axis_of.items():
        aidx[a] = (atlas.shape[a] - 1 - sidx[s]) if reversed_[a] else sidx[s]
    return atlas[tuple(aidx)]


@pytest.fixture(scope="module")
def atlas():
    rng = np.random.default_rng(3)
    return rng.permutation(5 * 6 * 7).reshape(5, 6, 7)  # unique values: any mix-up shows


def test_there_are_48_distinct_orientations():
    codes = all_codes()
    assert len(set(codes)) == 48
    orients = {Orientation.from_codes(c, "asr") for c in codes}
    assert len(orients) == 48
    assert {Orientation.from_clearmap(p) for p in all_signed_perms()} == orients


@pytest.mark.parametrize("atlas_code", ["asr", "lpi", "sal"])
@pytest.mark.parametrize("sample_code", all_codes())
def test_brainglobe_code_orients_array_and_points(atlas, atlas_code, sample_code):
    sample = volume_in_code(atlas, atlas_code, sample_code)
    o = Orientation.from_codes(sample_code, atlas_code)
    np.testing.assert_array_equal(o.apply_to_array(sample), atlas)
    # points: every sample voxel lands on the atlas voxel holding the same value
    s_idx = np.indices(sample.shape).reshape(3, -1).T
    a_idx = o.apply_to_points(s_idx, sample.shape)
    np.testing.assert_array_equal(atlas[tuple(a_idx.astype(int).T)], sample.ravel())
    np.testing.assert_array_equal(o.invert_points(a_idx, sample.shape), s_idx)


@pytest.mark.parametrize("signed", all_signed_perms())
def test_clearmap_permutation_orients_array(atlas, signed):
    sample = volume_in_clearmap(atlas, signed)
    o = Orientation.from_clearmap(signed)
    np.testing.assert_array_equal(o.apply_to_array(sample), atlas)
    assert o.to_clearmap() == signed
    assert Orientation.resolve(list(signed), None) == o


@pytest.mark.parametrize("sample_code", all_codes())
def test_both_notations_agree(atlas, sample_code):
    """The ClearMap permutation that reproduces a BrainGlobe-declared sample is the same
    Orientation as the code: found by search over all 48, not by formula."""
    sample = volume_in_code(atlas, "asr", sample_code)
    matches = [
        p
        for p in all_signed_perms()
        if volume_in_clearmap(atlas, p).shape == sample.shape and np.array_equal(volume_in_clearmap(atlas, p), sample)
    ]
    assert len(matches) == 1
    assert Orientation.from_clearmap(matches[0]) == Orientation.resolve(sample_code, "asr")


def test_known_cases_by_hand():
    # demo: sample 'ipl' vs atlas 'asr': atlas z (a->p) is sample y reversed (sample y runs p->a),
    # atlas y (s->i) is sample z reversed, atlas x (r->l) is sample x reversed.
    o = Orientation.from_codes("ipl", "asr")
    assert o.perm == (1, 0, 2) and o.flip == (True, True, True)
    # ClearMap (x, y, z): atlas x = -sample x, atlas y = -sample z, atlas z = -sample y
    assert o.to_clearmap() == (-1, -3, -2)
    assert Orientation.from_codes("asr", "asr").is_identity


def test_inverse_composes_to_identity():
    shape = (4, 5, 6)
    pts = np.random.default_rng(0).uniform(0, 3, (50, 3))
    for c in all_codes():
        o = Orientation.from_codes(c, "asr")
        back = o.inverse().apply_to_points(o.apply_to_points(pts, shape), o.oriented_shape(shape))
        np.testing.assert_allclose(back, pts, atol=1e-12)


@pytest.mark.parametrize("bad", ["asx", "aas", "as", "apr"])
def test_bad_codes_are_config_errors(bad):
    with pytest.raises(ConfigError, match="orientation code"):
        Orientation.from_codes(bad, "asr")


@pytest.mark.parametrize("bad", [(1, 2, 2), (1, 2), (0, 1, 2), (1, -2, 4)])
def test_bad_clearmap_permutations_are_config_errors(bad):
    with pytest.raises(ConfigError, match="signed permutation"):
        Orientation.from_clearmap(bad)
