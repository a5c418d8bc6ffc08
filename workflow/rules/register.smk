# Atlas registration with itk-elastix: atlas reference -> resampled autofluorescence
# (affine then B-spline), optional signal -> autofluorescence correction, the orientation
# guard, warped annotation/reference, QC pictures. See docs/registration.md.
REG_DIR = f"{SD}/registration"
REG_SUMMARY = f"{REG_DIR}/registration.json"


rule register:
    input:
        unpack(
            lambda w: {
                "autofluorescence": f"{SD}/resampled/autofluorescence.ome.zarr",
                **(
                    {"signal": f"{SD}/resampled/signal.ome.zarr"}
                    if CFG.steps.registration.channel_correction
                    else {}
                ),
                **{f"raw_{c}": f"{SD}/raw/{c}.ome.zarr" for c in CHANNELS},
                "atlas": atlas_inputs(),
                "parameter_files": [str(p) for p in CFG.steps.registration.parameter_files],
            }
        ),
    output:
        summary=REG_SUMMARY,
        annotation=directory(f"{REG_DIR}/annotation_in_sample.ome.zarr"),
        reference=directory(f"{REG_DIR}/reference_in_sample.ome.zarr"),
        qc=[f"{REG_DIR}/qc_{axis}.png" for axis in range(3)],
    params:
        task="register",
        registration=CFG.steps.registration.model_dump(mode="json"),
        atlas=CFG.atlas.model_dump(mode="json"),
        channels={name: ch.model_dump(mode="json") for name, ch in CFG.channels.all().items()},
    threads: 8
    log:
        log_path("register"),
    benchmark:
        bench_path("register")
    resources:
        mem_mb=8000,
    script:
        TASK_SCRIPT


TARGETS += [REG_SUMMARY]
