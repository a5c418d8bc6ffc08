# Atlas registration with itk-elastix: atlas reference -> resampled autofluorescence
# (affine then B-spline), optional signal -> autofluorescence correction, the orientation
# guard, warped annotation/reference, QC pictures. See docs/registration.md.


rule register:
    input:
        unpack(register_inputs),
    output:
        summary=f"{SD}/registration/registration.json",
        annotation=directory(f"{SD}/registration/annotation_in_sample.ome.zarr"),
        reference=directory(f"{SD}/registration/reference_in_sample.ome.zarr"),
        qc=[f"{SD}/registration/qc_{axis}.png" for axis in range(3)],
    log:
        log_path("register"),
    benchmark:
        bench_path("register")
    threads: 8
    resources:
        mem_mb=8000,
    params:
        task="register",
        registration=CFG.steps.registration.model_dump(mode="json"),
        atlas=CFG.atlas.model_dump(mode="json"),
        channels={n: ch.model_dump(mode="json") for n, ch in CFG.channels.all().items()},
    script:
        TASK_SCRIPT


TARGETS += [rules.register.output.summary]
