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
        qc=[
            report(
                f"{SD}/registration/qc_{axis}.png",
                caption="../report/registration_qc.rst",
                category="Registration",
                subcategory="{sample}",
            )
            for axis in range(3)
        ],
    log:
        log_path("register"),
    benchmark:
        bench_path("register")
    threads: 8
    resources:
        mem_mb=job_memory(MEMORY["register"]),
    params:
        task="register",
        registration=lambda w: cfg(w).steps.registration.model_dump(mode="json"),
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
        channels=lambda w: {
            n: ch.model_dump(mode="json") for n, ch in cfg(w).channels.all().items()
        },
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.register.output.summary, stage="register")


rule atlas_overlay:
    input:
        signal=raw_channel("signal"),
        registration=rules.register.output.summary,
        atlas=atlas_inputs,
    output:
        zarr=directory(f"{SD}/registration/annotation_in_raw.ome.zarr"),
    log:
        log_path("atlas_overlay"),
    benchmark:
        bench_path("atlas_overlay")
    resources:
        mem_mb=job_memory(MEMORY["overlay"]),
    params:
        task="atlas_overlay",
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.atlas_overlay.output.zarr, stage="atlas_overlay")
