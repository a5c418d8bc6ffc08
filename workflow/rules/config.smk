# The resolved configuration (every default filled in) beside the results it made:
# results/<sample>/config.resolved.yaml


rule resolved_config:
    output:
        yaml=f"{SD}/config.resolved.yaml",
    log:
        log_path("resolved_config"),
    params:
        task="resolved_config",
        resolved=lambda w: cfg(w).model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.resolved_config.output.yaml)
