# Resample every channel to the atlas voxel size and orientation (streamed over raw planes):
# results/<sample>/raw/<channel>.ome.zarr -> results/<sample>/resampled/<channel>.ome.zarr


rule resample:
    input:
        raw=rules.ingest.output.zarr,
        atlas=atlas_inputs,
    output:
        zarr=directory(f"{SD}/resampled/{{channel}}.ome.zarr"),
    log:
        log_path("resample_{channel}"),
    benchmark:
        bench_path("resample_{channel}")
    resources:
        mem_mb=job_memory(MEMORY["resample"]),
    params:
        task="resample",
        channel=lambda w: cfg(w).channels.all()[w.channel].model_dump(mode="json"),
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
        resample=lambda w: cfg(w).steps.resample.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_channel(rules.resample.output.zarr, stage="resample")
