# Atlas-space analysis of one brain (ClearMap's voxelize and region counts):
# cells_atlas.parquet -> maps/<name>.ome.zarr (+ .tif), regions/counts.csv (+ parquet,
# leaves, collapsed views, summary). See docs/outputs.md.


rule density_maps:
    input:
        cells=rules.cells_atlas.output.parquet,
        atlas=atlas_inputs,
    output:
        maps=[
            directory(p)
            for p in expand(
                f"{SD}/maps/{{name}}.ome.zarr", name=MAP_NAMES, allow_missing=True
            )
        ],
        tiffs=(
            expand(f"{SD}/maps/{{name}}.tif", name=MAP_NAMES, allow_missing=True)
            if VOXELIZE.tiff
            else []
        ),
    log:
        log_path("density_maps"),
    benchmark:
        bench_path("density_maps")
    resources:
        mem_mb=job_memory(MEMORY["maps"]),
    params:
        task="maps",
        voxelize=lambda w: cfg(w).steps.voxelize.model_dump(mode="json"),
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
        names=MAP_NAMES,
    script:
        TASK_SCRIPT


rule region_tables:
    input:
        cells=rules.cells_atlas.output.parquet,
        atlas=atlas_inputs,
    output:
        csv=report(
            f"{SD}/regions/counts.csv",
            caption="../report/region_counts.rst",
            category="Regions",
            subcategory="{sample}",
        ),
        parquet=f"{SD}/regions/counts.parquet",
        leaves=f"{SD}/regions/leaves.csv",
        collapsed=expand(
            f"{SD}/regions/counts_depth{{depth}}.csv",
            depth=COLLAPSE_DEPTHS,
            allow_missing=True,
        ),
        summary=f"{SD}/regions/summary.txt",
    log:
        log_path("region_tables"),
    benchmark:
        bench_path("region_tables")
    resources:
        mem_mb=job_memory(MEMORY["tables_atlas"]),
    params:
        task="regions",
        regions=lambda w: cfg(w).steps.regions.model_dump(mode="json"),
        depths=COLLAPSE_DEPTHS,
        atlas=lambda w: cfg(w).atlas.model_dump(mode="json"),
    script:
        TASK_SCRIPT


TARGETS += per_sample(rules.region_tables.output.csv, stage="region_tables")
TARGETS += per_sample(rules.region_tables.output.summary, stage="region_tables")
if VOXELIZE.enabled:
    TARGETS += per_sample(f"{SD}/maps/density.ome.zarr", stage="density_maps")
