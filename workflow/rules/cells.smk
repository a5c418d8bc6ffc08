# Thresholding of the detected cells (ClearMap's thresholdPoints) and detection QC:
# cells_raw.parquet -> cells.parquet + cells.csv, qc_cells.png, qc_overlay.ome.zarr;
# then the cells into atlas space -> cells_atlas.parquet + cells_atlas.csv.


rule threshold_cells:
    input:
        cells=f"{DETECT_DIR}/cells_raw.parquet",
    output:
        parquet=f"{DETECT_DIR}/cells.parquet",
        csv=f"{DETECT_DIR}/cells.csv",
    params:
        task="cells",
        action="threshold",
        threshold=CFG.steps.threshold.model_dump(mode="json"),
    log:
        log_path("threshold_cells"),
    benchmark:
        bench_path("threshold_cells")
    resources:
        mem_mb=2000,
    script:
        TASK_SCRIPT


rule qc_cells:
    input:
        cells=f"{DETECT_DIR}/cells.parquet",
        cells_raw=f"{DETECT_DIR}/cells_raw.parquet",
        signal=f"{SD}/raw/signal.ome.zarr",
    output:
        png=f"{DETECT_DIR}/qc_cells.png",
        overlay=directory(f"{DETECT_DIR}/qc_overlay.ome.zarr"),
    params:
        task="cells",
        action="qc",
    log:
        log_path("qc_cells"),
    benchmark:
        bench_path("qc_cells")
    resources:
        mem_mb=2000,
    script:
        TASK_SCRIPT


rule cells_atlas:
    input:
        cells=f"{DETECT_DIR}/cells.parquet",
        registration=REG_SUMMARY,
        atlas=atlas_inputs(),
    output:
        parquet=f"{DETECT_DIR}/cells_atlas.parquet",
        csv=f"{DETECT_DIR}/cells_atlas.csv",
    params:
        task="cells_atlas",
        atlas=CFG.atlas.model_dump(mode="json"),
    log:
        log_path("cells_atlas"),
    benchmark:
        bench_path("cells_atlas")
    resources:
        mem_mb=2000,
    script:
        TASK_SCRIPT


TARGETS += [
    f"{DETECT_DIR}/cells.parquet",
    f"{DETECT_DIR}/cells.csv",
    f"{DETECT_DIR}/qc_cells.png",
    f"{DETECT_DIR}/qc_overlay.ome.zarr",
    f"{DETECT_DIR}/cells_atlas.parquet",
]
