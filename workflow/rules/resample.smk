# Resample every channel to the atlas voxel size and orientation (streamed over raw planes):
# results/<sample>/raw/<channel>.ome.zarr -> results/<sample>/resampled/<channel>.ome.zarr


rule resample:
    input:
        raw=rules.ingest.output.zarr,
        atlas=atlas_inputs(),
    output:
        zarr=directory(f"{SD}/resampled/{{channel}}.ome.zarr"),
    log:
        log_path("resample_{channel}"),
    benchmark:
        bench_path("resample_{channel}")
    resources:
        mem_mb=4000,
    params:
        task="resample",
        channel=lambda w: CFG.channels.all()[w.channel].model_dump(mode="json"),
        atlas=CFG.atlas.model_dump(mode="json"),
        resample=CFG.steps.resample.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += expand(rules.resample.output.zarr, channel=CHANNELS)
