# Cell detection, block-parallel: a checkpoint plans the block grid of the ingested
# signal, one job per batch of blocks detects cells, a gather rule merges them into
# results/<sample>/cells/cells_raw.parquet. See docs/detection.md.
import json

from spimflow.blocks import block_memory_mb
from spimflow.steps.detect import required_overlap

DETECT_DIR = f"{SD}/cells"
DETECT_PLAN = f"{DETECT_DIR}/blocks/plan.json"
DETECT_ILLUMINATION = f"{DETECT_DIR}/blocks/illumination.npz"
_DETECT = CFG.steps.detect
_SIGNAL_VOXEL = CFG.channels.signal.voxel_size

# Grid, filter and threshold checks run with the others in common.smk (spimflow.checks).

# memory of one block job, from the configured block and the overlap the filters need
DETECT_MEM_MB = block_memory_mb(
    _DETECT.blocks.size,
    _DETECT.blocks.overlap or required_overlap(_SIGNAL_VOXEL, _DETECT),
    _DETECT.illumination.enabled,
)


checkpoint detect_plan:
    input:
        signal=f"{SD}/raw/signal.ome.zarr",
    output:
        DETECT_PLAN,
    params:
        task="detect",
        action="plan",
        detect=_DETECT.model_dump(mode="json"),
    log:
        log_path("detect_plan"),
    benchmark:
        bench_path("detect_plan")
    resources:
        mem_mb=1000,
    script:
        TASK_SCRIPT


rule detect_illumination:
    input:
        signal=f"{SD}/raw/signal.ome.zarr",
    output:
        DETECT_ILLUMINATION,
    params:
        task="detect",
        action="illumination",
        detect=_DETECT.model_dump(mode="json"),
    log:
        log_path("detect_illumination"),
    benchmark:
        bench_path("detect_illumination")
    resources:
        mem_mb=2000,
    script:
        TASK_SCRIPT


rule detect_batch:
    input:
        unpack(
            lambda w: {
                "signal": f"{SD}/raw/signal.ome.zarr",
                "plan": DETECT_PLAN,
                **({"illumination": DETECT_ILLUMINATION} if _DETECT.illumination.enabled else {}),
            }
        ),
    output:
        f"{DETECT_DIR}/blocks/batch_{{batch}}.parquet",
    params:
        task="detect",
        action="batch",
        detect=_DETECT.model_dump(mode="json"),
    wildcard_constraints:
        batch=r"\d+",
    # on a cluster, --group-components detect_blocks=<n> packs n batch jobs into one submission
    group:
        "detect_blocks"
    log:
        log_path("detect_batch_{batch}"),
    benchmark:
        bench_path("detect_batch_{batch}")
    threads: 1
    resources:
        mem_mb=DETECT_MEM_MB,
    script:
        TASK_SCRIPT


def detect_batch_tables(wildcards):
    """One parquet per batch of the plan (known once the checkpoint has run)."""
    with open(checkpoints.detect_plan.get().output[0]) as fh:
        n = len(json.load(fh)["batches"])
    return [f"{DETECT_DIR}/blocks/batch_{i}.parquet" for i in range(n)]


rule detect_gather:
    input:
        plan=DETECT_PLAN,
        batches=detect_batch_tables,
    output:
        f"{DETECT_DIR}/cells_raw.parquet",
    params:
        task="detect",
        action="gather",
    log:
        log_path("detect_gather"),
    benchmark:
        bench_path("detect_gather")
    resources:
        mem_mb=2000,
    script:
        TASK_SCRIPT


TARGETS += [f"{DETECT_DIR}/cells_raw.parquet"]
