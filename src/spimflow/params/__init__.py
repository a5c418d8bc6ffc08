"""Parameter models for every step (light modules: pydantic only, no heavy imports).

Each step owns one module here; :mod:`spimflow.config` assembles them into the
sample configuration. Defaults are chosen to work on iDISCO+-like data at the
usual 3-5 µm light-sheet resolution and on the embedded demo.
"""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are validated on assignment,
    and no float may be NaN or infinite (open ends are written null)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
