# The embedded demo: a synthetic atlas and brain made from a seed (no downloads).
if CFG.demo:

    rule demo_data:
        output:
            manifest=f"{DEMO_DIR}/demo.json",
        log:
            f"{DEMO_DIR}/logs/demo_data.log",
        benchmark:
            f"{DEMO_DIR}/logs/demo_data.tsv"
        resources:
            mem_mb=2000,
        params:
            task="demo",
            out_dir=lambda w, output: str(Path(output.manifest).parent),
            preset=CFG.demo.preset,
            seed=CFG.demo.seed,
        script:
            TASK_SCRIPT
