# Thresholding of the detected cells (ClearMap's thresholdPoints) and detection QC:
# cells_raw.parquet -> cells.parquet + cells.csv, qc_cells.png, qc_overlay.ome.zarr;
# then the cells into atlas space -> cells_atlas.parquet + cells_atlas.csv.


rule threshold_cells:
    input:
        cells=rules.detect_gather.output.cells,
    output:
        parquet=f"{SD}/cells/cells.parquet",
        csv=f"{SD}/cells/cells.csv",
    log:
        log_path("threshold_cells"),
    benchmark:
        bench_path("threshold_cells")
    resources:
        mem_mb=job_memory(MEMORY["tables"]),
    params:
        task="cells",
        action="threshold",
        threshold=lambda w: cfg(w).steps.threshold.model_dump(mode="json"),
    script:
        TASK_SCRIPT


rule qc_cells:
    input:
        cells=rules.threshold_cells.output.parquet,
        cells_raw=rules.detect_gather.output.cells,
        signal=raw_channel("signal"),
    output:
        png=report(
            f"{SD}/cells/qc_cells.png",
            caption="../report/detection_qc.rst",
            category="Detection",
            subcategory="{sample}",
        ),
        overlay=directory(f"{SD}/cells/qc_overlay.ome.zarr"),
    log:
        log_path("qc_cells"),
    benchmark:
        bench_path("qc_cells")
    resources:
        mem_mb=job_memory(MEMORY["tables_signal"]),
    params:
        task="cells",
        action="qc",
    script:
        TASK_SCRIPT


rule cells_atlas:
    input:
        cells=counted_cells,
        registration=rules.register.output.summary,
        atlas=atlas_inputs,
    output:
        parquet=f"{SD}/cells/cells_atlas.parquet",
        csv=f"{SD}/cells/cells_atlas.csv",
    log:
        log_path("cells_atlas"),
    benchmark:
        bench_path("cells_atlas")
    resources:
        mem_mb=job_memory(MEMORY["tables_atlas"]),
    params:
        task="cells_atlas",
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += [
    *per_sample(rules.threshold_cells.output.parquet),
    *per_sample(rules.threshold_cells.output.csv),
    *per_sample(rules.qc_cells.output.png),
    *per_sample(rules.qc_cells.output.overlay),
    *per_sample(rules.cells_atlas.output.parquet, stage="cells_atlas"),
]
