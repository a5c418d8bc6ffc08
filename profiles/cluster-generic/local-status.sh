#!/usr/bin/env bash
# Status of a job started by local-submit.sh, as snakemake-executor-plugin-cluster-generic
# wants it: one line, running, success or failed. Usage: local-status.sh <job id>
set -uo pipefail
spool="$PWD/.snakemake/local-cluster"
id="$1"
exit_status() {
    if [ "$(cat "$spool/$id.exit")" = 0 ]; then echo success; else echo failed; fi
}
if [ -f "$spool/$id.exit" ]; then
    exit_status
    exit 0
fi
pid="$(cat "$spool/$id.pid" 2>/dev/null || true)"
state=""
if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    read -r _ _ state _ <"/proc/$pid/stat" || state=""
elif [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    state=R
fi
if [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]; then
    echo running
elif [ -f "$spool/$id.exit" ]; then
    exit_status  # it finished between the two looks
else
    echo failed  # gone without an exit status: killed (a dead node, on a cluster)
fi
