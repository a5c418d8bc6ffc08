# The resolved configuration (every default filled in) beside the results it made:
# results/<sample>/config.resolved.yaml


rule resolved_config:
    output:
        yaml=f"{SD}/config.resolved.yaml",
    log:
        log_path("resolved_config"),
    resources:
        mem_mb=job_memory(MEMORY["small"]),
    params:
        task="resolved_config",
        resolved=lambda w: cfg(w).model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.resolved_config.output.yaml)


# Provenance beside it, written after every other output of the sample: software versions,
# git revision, and each input file's size, time and hash (results/<sample>/provenance.json).
# update(): the previous record stays until the task has compared the inputs with it.
rule provenance:
    input:
        unpack(provenance_inputs),
    output:
        json=update(f"{SD}/provenance.json"),
    log:
        log_path("provenance"),
    benchmark:
        bench_path("provenance")
    resources:
        mem_mb=job_memory(MEMORY["small"]),
    params:
        task="provenance",
        resolved=lambda w: cfg(w).model_dump(mode="json"),
        # sizes and times of the user's input files: a change re-runs this rule even when
        # the new file is older than the outputs (rsync -t, cp -p)
        inputs=provenance_fingerprint,
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.provenance.output.json)
