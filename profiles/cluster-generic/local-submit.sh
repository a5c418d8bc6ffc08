#!/usr/bin/env bash
# A stand-in scheduler for snakemake-executor-plugin-cluster-generic on one machine: start
# the job script as its own detached process (its own session, a clean environment with
# only PATH, HOME, LANG and TMPDIR, as on a cluster node), print the job id, return at once.
# The job's exit status lands in .snakemake/local-cluster/<id>.exit, its output in <id>.log;
# local-status.sh reads them. Usage (by Snakemake): local-submit.sh <jobscript>
set -euo pipefail
jobscript="${!#}"
spool="$PWD/.snakemake/local-cluster"
mkdir -p "$spool"
id="job$(date +%s%N)$RANDOM"
setsid env -i PATH="${PATH:-/usr/bin:/bin}" HOME="${HOME:-/tmp}" LANG=C.UTF-8 TMPDIR="${TMPDIR:-/tmp}" \
    bash -c 'bash "$1"; code=$?; echo "$code" > "$2.exit.tmp"; mv "$2.exit.tmp" "$2.exit"' \
    job "$jobscript" "$spool/$id" >"$spool/$id.log" 2>&1 </dev/null &
echo "$!" >"$spool/$id.pid"
echo "$id"
