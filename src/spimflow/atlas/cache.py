"""BrainGlobe atlases by name: find ``<name>_v<version>/`` in the BrainGlobe cache folder.

The cache folder is, first found wins:

1. the folder given explicitly (``atlas.cache_dir`` in a config);
2. ``brainglobe_dir`` in section ``default_dirs`` of BrainGlobe's own config file,
   ``$BRAINGLOBE_CONFIG_DIR/bg_config.conf`` (default ``~/.config/brainglobe/bg_config.conf``),
   which brainglobe-atlasapi writes and ``brainglobe config`` edits;
3. ``~/.brainglobe``.

BrainGlobe keeps each atlas version in a folder of its own, e.g.
``~/.brainglobe/allen_mouse_25um_v1.2/`` (metadata.json, structures.json, annotation.tiff,
reference.tiff, hemispheres.tiff, meshes/). Versions are compared numerically, part by
part (1.2 < 1.10). A folder without ``metadata.json`` is an incomplete download and is not
used. When the atlas is not there, :func:`resolve_brainglobe_atlas` can fetch it through
the ``brainglobe-atlasapi`` package (2.x: the 3.x releases store atlases in another,
OME-Zarr layout that spimflow does not read); without it the error says how to get it.
See ``docs/atlases.md``.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
from pathlib import Path

from spimflow.errors import ConfigError

log = logging.getLogger("spimflow.atlas")

CONFIG_FILENAME = "bg_config.conf"
VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def brainglobe_config_file() -> Path:
    """BrainGlobe's config file: ``$BRAINGLOBE_CONFIG_DIR/bg_config.conf``, by default
    ``~/.config/brainglobe/bg_config.conf`` (as brainglobe-atlasapi finds it).

    Returns
    -------
    Path
        The file's path (it need not exist).
    """
    folder = os.environ.get("BRAINGLOBE_CONFIG_DIR")
    base = Path(folder).expanduser() if folder else Path.home() / ".config" / "brainglobe"
    return base / CONFIG_FILENAME


def default_cache_dir() -> tuple[Path, str]:
    """The BrainGlobe cache folder BrainGlobe itself uses, and where that was decided.

    Returns
    -------
    Path
        ``brainglobe_dir`` of the BrainGlobe config file when it names one, else
        ``~/.brainglobe``.
    str
        Where the folder came from, for messages.

    Raises
    ------
    ConfigError
        If the BrainGlobe config file exists but cannot be read.
    """
    path = brainglobe_config_file()
    if path.is_file():
        conf = configparser.ConfigParser()
        try:
            conf.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the BrainGlobe config: {exc}") from None
        value = conf.get("default_dirs", "brainglobe_dir", fallback="").strip()
        if value:
            return Path(value).expanduser(), f"brainglobe_dir in {path}"
    return Path.home() / ".brainglobe", "the BrainGlobe default"


def cache_dir_for(cache_dir: str | Path | None = None, base: str | Path = ".") -> tuple[Path, str]:
    """The cache folder to search: ``cache_dir`` when given, else :func:`default_cache_dir`.

    Parameters
    ----------
    cache_dir : str or Path, optional
        Explicit folder (``atlas.cache_dir``); ``~`` is expanded, a relative path is
        taken from ``base``.
    base : str or Path, optional
        Folder that relative paths are relative to.

    Returns
    -------
    Path
        The folder.
    str
        Where it came from, for messages.
    """
    if cache_dir is not None:
        return Path(base) / Path(cache_dir).expanduser(), "atlas.cache_dir"
    return default_cache_dir()


def version_key(version: str) -> tuple[int, ...]:
    """A version string as a tuple of integers, for numerical comparison.

    Parameters
    ----------
    version : str
        Dot-separated numbers, optionally prefixed with ``v``.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If the text is not a version.

    Examples
    --------
    >>> version_key("1.2") < version_key("1.10")
    True
    >>> version_key("v2.0")
    (2, 0)
    """
    found = VERSION.match(str(version).strip())
    if not found:
        raise ValueError(f"{version!r} is not a version (expected numbers separated by dots, e.g. '1.2')")
    return tuple(int(part) for part in found.group(1).split("."))


def atlas_versions(cache_dir: str | Path, name: str) -> dict[str, Path]:
    """The versions of atlas ``name`` in a cache folder, oldest first.

    Parameters
    ----------
    cache_dir : str or Path
        The BrainGlobe cache folder.
    name : str
        Atlas name, e.g. ``allen_mouse_25um``.

    Returns
    -------
    dict of str to Path
        Version (as written in the folder name) → folder, for every folder
        ``<name>_v<version>`` holding a ``metadata.json``; sorted by :func:`version_key`.
    """
    folder = Path(cache_dir)
    if not folder.is_dir():
        return {}
    found = {}
    prefix = f"{name}_v"
    for child in folder.iterdir():
        if not child.name.startswith(prefix) or not (child / "metadata.json").is_file():
            continue
        version = child.name[len(prefix) :]
        if VERSION.match(version) and not version.startswith("v"):
            found[version] = child
    return dict(sorted(found.items(), key=lambda kv: version_key(kv[0])))


def _incomplete(cache_dir: Path, name: str) -> list[str]:
    if not cache_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in cache_dir.glob(f"{name}_v*")
        if p.is_dir() and not (p / "metadata.json").is_file() and VERSION.match(p.name[len(name) + 2 :])
    )


def find_brainglobe_atlas(name: str, version: str | None, cache_dir: Path) -> Path | None:
    """The folder of atlas ``name`` (``version``, or the newest) in ``cache_dir``, or None.

    Parameters
    ----------
    name : str
        Atlas name.
    version : str, optional
        Wanted version; compared numerically (``"1.2"`` finds ``_v1.2``, and ``_v01.2``).
    cache_dir : Path
        The BrainGlobe cache folder.

    Returns
    -------
    Path or None
    """
    versions = atlas_versions(cache_dir, name)
    if not versions:
        return None
    if version is None:
        return versions[list(versions)[-1]]
    wanted = version_key(version)
    return next((p for v, p in versions.items() if version_key(v) == wanted), None)


def missing_atlas_message(name: str, version: str | None, cache_dir: Path, origin: str, why: str = "") -> str:
    """What to tell a user whose atlas is not in the cache folder.

    Parameters
    ----------
    name : str
        Atlas name.
    version : str, optional
        The version asked for.
    cache_dir : Path
        The folder searched.
    origin : str
        Where that folder came from (see :func:`cache_dir_for`).
    why : str, optional
        Why it could not be fetched, appended when given.

    Returns
    -------
    str
    """
    wanted = f"{name} version {version}" if version else name
    versions = list(atlas_versions(cache_dir, name))
    lines = [
        f"atlas.name: BrainGlobe atlas {wanted} not found in the cache folder {cache_dir} "
        f"(searched {cache_dir}/{name}_v<version>/; folder from {origin})."
    ]
    if versions:
        lines.append(f"  Versions found there: {', '.join(versions)} (drop atlas.version for the newest).")
    else:
        lines.append("  No version of it is there.")
    broken = _incomplete(cache_dir, name)
    if broken:
        lines.append(f"  Incomplete (no metadata.json, not used): {', '.join(broken)}.")
    if why:
        lines.append(f"  {why}")
    lines.append(
        f"  To get it: pip install 'brainglobe-atlasapi<3' then brainglobe install -a {name} "
        "(it installs into the folder of your BrainGlobe config); or set atlas.cache_dir to the folder "
        "that holds it; or give the atlas folder itself as atlas.path."
    )
    return "\n".join(lines)


def fetch_brainglobe_atlas(name: str, cache_dir: Path) -> str:
    """Download atlas ``name`` into ``cache_dir`` through brainglobe-atlasapi, if installed.

    brainglobe-atlasapi 2.x downloads the newest version into ``<cache_dir>/<name>_v<v>/``;
    3.x keeps atlases in an OME-Zarr layout spimflow does not read, so it is not used.

    Parameters
    ----------
    name : str
        Atlas name.
    cache_dir : Path
        The BrainGlobe cache folder.

    Returns
    -------
    str
        "" when the package ran, else why nothing was fetched (for the error message).
    """
    try:
        import brainglobe_atlasapi
    except ImportError:
        return "brainglobe-atlasapi is not installed, so spimflow could not fetch it."
    installed = str(getattr(brainglobe_atlasapi, "__version__", "") or "")
    try:
        major = version_key(installed.split("+")[0].split("rc")[0])[0] if installed else 2
    except ValueError:
        major = 2
    if major >= 3:
        return (
            f"brainglobe-atlasapi {installed} is installed; from version 3 it stores atlases as OME-Zarr "
            "(<folder>/brainglobe-atlasapi/atlases/...), which spimflow does not read, so it was not used."
        )
    log.warning("atlas %s is not in %s: fetching it with brainglobe-atlasapi %s", name, cache_dir, installed)
    try:
        brainglobe_atlasapi.BrainGlobeAtlas(name, brainglobe_dir=cache_dir, check_latest=False)
    except Exception as exc:  # network, unknown name, disk: all reported to the user as they are
        return f"brainglobe-atlasapi could not fetch it: {type(exc).__name__}: {exc}"
    return ""


def resolve_brainglobe_atlas(
    name: str,
    version: str | None = None,
    cache_dir: str | Path | None = None,
    base: str | Path = ".",
    fetch: bool = True,
) -> Path:
    """The folder of a BrainGlobe atlas given by name, fetched when missing and possible.

    Parameters
    ----------
    name : str
        Atlas name, e.g. ``allen_mouse_25um``.
    version : str, optional
        Wanted version; default the newest in the cache.
    cache_dir : str or Path, optional
        Cache folder to search (default: :func:`default_cache_dir`).
    base : str or Path, optional
        Folder that a relative ``cache_dir`` is relative to.
    fetch : bool, optional
        When the atlas is missing, try :func:`fetch_brainglobe_atlas`.

    Returns
    -------
    Path
        The atlas folder ``<cache_dir>/<name>_v<version>``.

    Raises
    ------
    ConfigError
        If the atlas is not in the cache and could not be fetched; the message names
        the folder searched, the versions found and how to get the atlas.
    """
    if not NAME.match(name):
        raise ConfigError(f"atlas.name: {name!r} is not a BrainGlobe atlas name (e.g. allen_mouse_25um)")
    folder, origin = cache_dir_for(cache_dir, base)
    found = find_brainglobe_atlas(name, version, folder)
    if found is not None:
        return found
    why = ""
    if fetch:
        why = fetch_brainglobe_atlas(name, folder)
        found = find_brainglobe_atlas(name, version, folder)
        if found is not None:
            return found
        if not why and version is not None:
            why = "brainglobe-atlasapi installs only the newest version of an atlas."
    raise ConfigError(missing_atlas_message(name, version, folder, origin, why))


def brainglobe_folder(atlas, base: str | Path = ".", fetch: bool = False) -> Path:
    """The folder of a ``brainglobe`` atlas config: its ``path``, or the cache folder's
    ``<name>_v<version>`` (:func:`resolve_brainglobe_atlas`).

    Parameters
    ----------
    atlas : AtlasConfig
        The ``atlas`` section of a config (:class:`spimflow.config.AtlasConfig`).
    base : str or Path, optional
        Folder that relative paths are relative to.
    fetch : bool, optional
        Fetch a named atlas missing from the cache (see :func:`fetch_brainglobe_atlas`).

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        If the atlas is not a BrainGlobe one, or a named atlas is not found.
    """
    if atlas.format != "brainglobe":
        raise ConfigError(f"atlas: a {atlas.format!r} atlas is not a BrainGlobe folder")
    if atlas.path is not None:
        return Path(base) / atlas.path
    return resolve_brainglobe_atlas(atlas.name, atlas.version, atlas.cache_dir, base, fetch=fetch)
