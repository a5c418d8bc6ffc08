#!/usr/bin/env bash
# Cancel jobs started by local-submit.sh (Ctrl-C of the main Snakemake): kill each job's
# process group. Usage: local-cancel.sh <job id>...
spool="$PWD/.snakemake/local-cluster"
for id in "$@"; do
    pid="$(cat "$spool/$id.pid" 2>/dev/null)" && kill -TERM -- "-$pid" 2>/dev/null
done
exit 0
