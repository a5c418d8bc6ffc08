# The embedded demo: a synthetic atlas and brain made from a seed (no downloads), one
# folder per demo brain (demo.out_dir).


rule demo_data:
    output:
        manifest="{demo_dir}/demo.json",
    log:
        "{demo_dir}/logs/demo_data.log",
    benchmark:
        "{demo_dir}/logs/demo_data.tsv"
    resources:
        mem_mb=job_memory(MEMORY["demo"]),
    params:
        task="demo",
        out_dir=lambda w, output: str(Path(output.manifest).parent),
        preset=lambda w: DEMOS[w.demo_dir].preset,
        seed=lambda w: DEMOS[w.demo_dir].seed,
        density_factors=lambda w: DEMOS[w.demo_dir].density_factors,
    script:
        TASK_SCRIPT
