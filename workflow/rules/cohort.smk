# Group statistics of a cohort (a cohort config only): region tests on every brain's region
# table, voxel tests on every brain's density map, plots for the report:
# results/cohorts/<cohort>/... See docs/statistics.md.
if COHORT:

    rule cohort_region_stats:
        input:
            tables=cohort_samples_of(rules.region_tables.output.parquet),
        output:
            csv=report(
                f"{CD}/regions/region_stats.csv",
                caption="../report/region_stats.rst",
                category="Cohort",
            ),
            parquet=f"{CD}/regions/region_stats.parquet",
            values=f"{CD}/regions/region_values.csv",
            samples=f"{CD}/samples.csv",
        log:
            f"{CD}/logs/region_stats.log",
        benchmark:
            f"{CD}/benchmarks/region_stats.tsv"
        resources:
            mem_mb=job_memory(MEMORY["tables"]),
        params:
            task="cohort",
            action="region_stats",
            stats=COHORT.stats.model_dump(mode="json"),
            groups=RUN.ordered_groups(),
            covariates=covariate_table(COHORT, Path.cwd()),
        script:
            TASK_SCRIPT

    rule cohort_voxel_stats:
        input:
            maps=cohort_samples_of(rules.density_maps.output.maps[0]),
            atlas=cohort_atlas_inputs,
        output:
            maps=[
                directory(f"{CD}/voxels/{name}.ome.zarr")
                for name in (
                    "mean_a",
                    "std_a",
                    "mean_b",
                    "std_b",
                    "statistic",
                    "p",
                    "p_signed",
                    "p_bh",
                )
            ],
            tiffs=(
                [
                    f"{CD}/voxels/{name}.tif"
                    for name in (
                        "mean_a",
                        "std_a",
                        "mean_b",
                        "std_b",
                        "statistic",
                        "p",
                        "p_signed",
                        "p_bh",
                    )
                ]
                if VOXELIZE.tiff
                else []
            ),
            colour=f"{CD}/voxels/p_colour.tif",
        log:
            f"{CD}/logs/voxel_stats.log",
        benchmark:
            f"{CD}/benchmarks/voxel_stats.tsv"
        resources:
            mem_mb=job_memory(MEMORY["voxel_stats"]),
        params:
            task="cohort",
            action="voxel_stats",
            stats=COHORT.stats.model_dump(mode="json"),
            groups=RUN.ordered_groups(),
            atlas=cohort_atlas(),
        script:
            TASK_SCRIPT

    rule cohort_plots:
        input:
            stats=rules.cohort_region_stats.output.parquet,
            values=rules.cohort_region_stats.output.values,
        output:
            volcano=report(
                f"{CD}/plots/volcano.png",
                caption="../report/volcano.rst",
                category="Cohort",
            ),
            bars=report(
                f"{CD}/plots/top_regions.png",
                caption="../report/top_regions.rst",
                category="Cohort",
            ),
            scatter=report(
                f"{CD}/plots/sample_scatter.png",
                caption="../report/sample_scatter.rst",
                category="Cohort",
            ),
        log:
            f"{CD}/logs/plots.log",
        benchmark:
            f"{CD}/benchmarks/plots.tsv"
        resources:
            mem_mb=job_memory(MEMORY["tables"]),
        params:
            task="cohort",
            action="plots",
            stats=COHORT.stats.model_dump(mode="json"),
            group_order=RUN.group_order(),
        script:
            TASK_SCRIPT

    rule cohort_p_map_plot:
        input:
            colour=rules.cohort_voxel_stats.output.colour,
            atlas=cohort_atlas_inputs,
        output:
            png=report(
                f"{CD}/plots/p_map_slices.png",
                caption="../report/p_map.rst",
                category="Cohort",
            ),
        log:
            f"{CD}/logs/p_map_plot.log",
        benchmark:
            f"{CD}/benchmarks/p_map_plot.tsv"
        resources:
            mem_mb=job_memory(MEMORY["cohort_atlas"]),
        params:
            task="cohort",
            action="p_map_plot",
            atlas=cohort_atlas(),
        script:
            TASK_SCRIPT

    TARGETS += [*rules.cohort_region_stats.output, *rules.cohort_plots.output]
    if COHORT.stats.voxel_maps:
        TARGETS += [
            *rules.cohort_voxel_stats.output,
            rules.cohort_p_map_plot.output.png,
        ]
