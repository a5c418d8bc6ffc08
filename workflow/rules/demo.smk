# The embedded demo: a synthetic atlas and brain made from a seed (no downloads).
if CFG.demo:

    rule demo_data:
        output:
            manifest=DEMO_MANIFEST,
        params:
            task="demo",
            out_dir=DEMO_DIR,
            preset=CFG.demo.preset,
            seed=CFG.demo.seed,
        log:
            f"{DEMO_DIR}/logs/demo_data.log",
        benchmark:
            f"{DEMO_DIR}/logs/demo_data.tsv"
        resources:
            mem_mb=2000,
        script:
            TASK_SCRIPT
