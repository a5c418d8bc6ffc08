"""Every check that can run before any job: the Snakefile and ``spimflow validate`` call
:func:`config_problems`, so both refuse exactly the same configs."""

from __future__ import annotations

from pathlib import Path

from spimflow.blocks import check_detect_config
from spimflow.config import SampleConfig, load_config, missing_inputs
from spimflow.errors import ConfigError
from spimflow.steps.detect.threshold import check_threshold_config


def detection_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """Block grid vs filter sizes, threshold columns, the flat-field profile file."""
    detect = cfg.steps.detect
    problems = check_detect_config(detect, cfg.channels.signal.voxel_size)
    problems += check_threshold_config(cfg.steps.threshold.ranges, detect.shape.enabled)
    profile = detect.illumination.profile
    if detect.illumination.enabled and detect.illumination.mode == "profile":
        if profile is None or not (Path(base) / profile).is_file():
            problems.append(f"steps.detect.illumination.profile: file not found: {profile}")
    return problems


def config_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """All problems found before a run, each naming its config key or file."""
    return missing_inputs(cfg, base) + detection_problems(cfg, base)


def validate_config_file(path: str | Path, base: str | Path = ".") -> SampleConfig:
    """Parse and check inputs; raise :class:`ConfigError` with every problem found."""
    cfg = load_config(path)
    problems = config_problems(cfg, base)
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return cfg
