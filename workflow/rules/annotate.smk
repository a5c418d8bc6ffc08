# Annotation projects (steps.annotate.enabled): every detection out to a ClickPoints-
# compatible project for people to correct (annotation/cells.cdb), and the edited project
# back in as cells/cells_curated.parquet. The project is update(): Snakemake never deletes
# it, and the export refuses to replace one holding edits. See docs/annotation.md.


rule annotation_export:
    input:
        unpack(annotation_export_inputs),
    output:
        cdb=update(f"{SD}/annotation/cells.cdb"),
    log:
        log_path("annotation_export"),
    benchmark:
        bench_path("annotation_export")
    resources:
        mem_mb=job_memory(MEMORY["tables_signal"]),
    params:
        task="annotate",
        action="export",
        annotate=lambda w: cfg(w).steps.annotate.model_dump(mode="json"),
        atlas=atlas_params,
        channel=lambda w: cfg(w).channels.signal.model_dump(mode="json"),
    script:
        TASK_SCRIPT


rule annotation_import:
    input:
        unpack(annotation_import_inputs),
    output:
        parquet=f"{SD}/cells/cells_curated.parquet",
        csv=f"{SD}/cells/cells_curated.csv",
    log:
        log_path("annotation_import"),
    benchmark:
        bench_path("annotation_import")
    resources:
        mem_mb=job_memory(MEMORY["tables_signal"]),
    params:
        task="annotate",
        action="import",
        detect=lambda w: cfg(w).steps.detect.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += [
    p
    for s, c in SAMPLES.items()
    if c.steps.annotate.enabled
    for p in expand(rules.annotation_import.output.parquet, sample=s)
]
