# Cell detection, block-parallel: a checkpoint plans the block grid of the ingested
# signal, one job per batch of blocks detects cells, a gather rule merges them into
# results/<sample>/cells/cells_raw.parquet. See docs/detection.md.


checkpoint detect_plan:
    input:
        signal=raw_channel("signal"),
    output:
        plan=f"{SD}/cells/blocks/plan.json",
    log:
        log_path("detect_plan"),
    benchmark:
        bench_path("detect_plan")
    resources:
        mem_mb=job_memory(MEMORY["signal_slabs"]),
        # not a param: a run with other --cores must not re-plan (and redo) the detection
        parallel_jobs=parallel_jobs(),
    params:
        task="detect",
        action="plan",
        # the grid depends on the block and filter sizes, not on the flat-field settings
        detect=lambda w: cfg(w).steps.detect.model_dump(
            mode="json", exclude={"illumination"}
        ),
        illumination_enabled=lambda w: cfg(w).steps.detect.illumination.enabled,
    script:
        TASK_SCRIPT


rule detect_illumination:
    input:
        signal=raw_channel("signal"),
    output:
        field=f"{SD}/cells/blocks/illumination.npz",
    log:
        log_path("detect_illumination"),
    benchmark:
        bench_path("detect_illumination")
    resources:
        mem_mb=job_memory(MEMORY["signal_slabs"]),
    params:
        task="detect",
        action="illumination",
        illumination=lambda w: cfg(w).steps.detect.illumination.model_dump(mode="json"),
    script:
        TASK_SCRIPT


rule detect_batch:
    input:
        unpack(detect_batch_inputs),
    output:
        cells=temp(f"{SD}/cells/blocks/batch_{{batch}}.parquet"),
    log:
        log_path("detect_batch_{batch}"),
    benchmark:
        bench_path("detect_batch_{batch}")
    # on a cluster, --group-components detect_blocks=<n> packs n batch jobs into one submission
    group:
        "detect_blocks"
    threads: 1
    resources:
        mem_mb=detect_memory_mb,
    params:
        task="detect",
        action="batch",
        detect=lambda w: cfg(w).steps.detect.model_dump(mode="json"),
    script:
        TASK_SCRIPT


rule detect_gather:
    input:
        plan=rules.detect_plan.output.plan,
        batches=detect_batch_tables,
    output:
        cells=f"{SD}/cells/cells_raw.parquet",
    log:
        log_path("detect_gather"),
    benchmark:
        bench_path("detect_gather")
    resources:
        mem_mb=job_memory(MEMORY["tables"]),
    params:
        task="detect",
        action="gather",
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.detect_gather.output.cells)
