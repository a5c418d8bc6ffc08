# Ingest: each channel's source (TIFF, pattern, folder, NRRD, MHD, Imaris, zarr)
# -> results/<sample>/raw/<channel>.ome.zarr, streamed plane by plane.


rule ingest:
    input:
        channel_source_inputs,
    output:
        zarr=directory(f"{SD}/raw/{{channel}}.ome.zarr"),
    log:
        log_path("ingest_{channel}"),
    benchmark:
        bench_path("ingest_{channel}")
    resources:
        mem_mb=job_memory(MEMORY["ingest"]),
    params:
        task="ingest",
        channel=lambda w: cfg(w).channels.all()[w.channel].model_dump(mode="json"),
        ingest=lambda w: cfg(w).ingest.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_channel(rules.ingest.output.zarr)
