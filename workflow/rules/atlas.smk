# Resample every channel to the atlas voxel size and orientation (streamed over raw planes):
# results/<sample>/raw/<channel>.ome.zarr -> results/<sample>/resampled/<channel>.ome.zarr


def atlas_inputs(wildcards=None):
    """The atlas files (the demo manifest when the demo rule makes the atlas)."""
    if CFG.demo:
        return [DEMO_MANIFEST]
    return [str(p) for p in CFG.atlas.files(Path("."))]


rule resample:
    input:
        raw=f"{SD}/raw/{{channel}}.ome.zarr",
        atlas=atlas_inputs(),
    output:
        directory(f"{SD}/resampled/{{channel}}.ome.zarr"),
    params:
        task="resample",
        channel=lambda w: CFG.channels.all()[w.channel].model_dump(mode="json"),
        atlas=CFG.atlas.model_dump(mode="json"),
        resample=CFG.steps.resample.model_dump(mode="json"),
    wildcard_constraints:
        channel="[A-Za-z0-9_]+",
    log:
        log_path("resample_{channel}"),
    benchmark:
        bench_path("resample_{channel}")
    resources:
        mem_mb=4000,
    script:
        TASK_SCRIPT


TARGETS += expand(f"{SD}/resampled/{{channel}}.ome.zarr", channel=CHANNELS)
