#!/usr/bin/env bash
# The whole test suite, stage by stage, as `make test` runs it (and CI, through
# .ci/run). Every stage runs even when an earlier one failed, so one run shows
# everything that is broken; the exit status is non-zero if any stage failed.
# Usage: tests/run-suite.sh [lab]     (lab: only the Molecule lab scenarios)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_HOME="$PWD/.ansible" NO_COLOR=1  # see the Makefile

passed=0
failed=0
failures=()
suite_start=$(date +%s)
# Each stage's output is kept so that the end of the run, which is all a CI
# log may show, can repeat why a stage failed.
logdir=$(mktemp -d "${TMPDIR:-/tmp}/cdvdisk-suite.XXXXXX")

stage() {
    local name=$1; shift
    local start rc
    start=$(date +%s)
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$logdir/${name// /_}.log"
    rc=${PIPESTATUS[0]}
    record "$name" "$rc" "$start"
}

record() {
    local name=$1 rc=$2 start=$3 end=${4:-$(date +%s)}
    # pytest exits 5 when it collected nothing: a suite that ran no test has failed.
    if [ "$rc" -eq 5 ]; then echo "=== $name: no tests were collected"; fi
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "=== $name: PASSED in $((end - start)) s"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED (exit $rc) in $((end - start)) s"
    fi
}

# A stage that runs beside the next ones, its output in its log only (two
# scenarios' lines interleaved would be unreadable); finish_beside waits for
# it, shows its last lines and records it.
beside_pid=
start_beside() {
    beside_name=$1; shift
    beside_start=$(date +%s)
    echo "=== $beside_name, beside the next stage (its log: $logdir/${beside_name// /_}.log): $*"
    ( "$@" > "$logdir/${beside_name// /_}.log" 2>&1; echo "$? $(date +%s)" > "$logdir/${beside_name// /_}.rc" ) &
    beside_pid=$!
}

finish_beside() {
    [ -n "$beside_pid" ] || return 0
    wait "$beside_pid"
    beside_pid=
    tail -n 30 "$logdir/${beside_name// /_}.log"
    local rc end
    read -r rc end < "$logdir/${beside_name// /_}.rc"
    record "$beside_name" "$rc" "$beside_start" "$end"
}

if [ "${1:-}" != lab ]; then
    stage unit pytest -q
    stage sanity tests/ansible-test.sh sanity
    stage lint make --no-print-directory lint
    stage collection tests/collection-build.sh
fi

# Build (or find cached) the lab image once, before scenarios boot VMs from it.
stage lab-image python3 lab/cdlab image
# profile_tasks stamps every task with the time (and lists the slowest at the
# end), so a stage log tells where a scenario's minutes went.
profiled=(env ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=25)
# storage_host runs beside storage_api, the longest scenario; neither boots a
# device (device_boot, whose boots starve each other, runs alone). Both are
# CPU-bound in their guests, so the pair saves little: 2944 s against
# 2125 s + 1054 s one after the other (2026-12-04, both passed).
# CDVDISK_SCENARIOS_IN_SERIES=1 runs them one after the other;
# CDVDISK_SCENARIOS="storage_api storage_host" runs only those.
beside_of=storage_api beside=storage_host
if [ -n "${CDVDISK_SCENARIOS_IN_SERIES:-}" ]; then beside=; fi
only=" ${CDVDISK_SCENARIOS:-} "
if [ "$only" != "  " ] && [[ $only != *" $beside_of "* || $only != *" $beside "* ]]; then beside=; fi
for scenario in extensions/molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$scenario")")
    if [ "$only" != "  " ] && [[ $only != *" $name "* ]]; then continue; fi
    if [ "$name" = "$beside" ]; then continue; fi
    if [ "$name" = "$beside_of" ] && [ -n "$beside" ]; then
        # Its own ANSIBLE_HOME: two Molecule runs must not install the collection into one at once.
        start_beside "scenario $beside" "${profiled[@]}" ANSIBLE_HOME="$logdir/ansible-home" molecule test -s "$beside"
    fi
    stage "scenario $name" "${profiled[@]}" molecule test -s "$name"
done
finish_beside

# Why a stage failed, in a few lines: a CI log may keep only the last 25 or so.
# For Ansible, each failure not followed by "...ignoring", with its task name;
# otherwise pytest's and ansible-test's error lines.
why_failed() {
    local log="$logdir/${1// /_}.log"
    awk -v stage="$1" '
        function flush() { if (pending != "") out[n++] = pending; pending = "" }
        /^TASK \[/ { flush(); task = $0; sub(/^TASK \[/, "", task); sub(/\] \**$/, "", task) }
        # ansible-core 2.19 prints the message on one line first; older ones only after fatal.
        /^\[ERROR\]: Task failed: / { pending = stage ": " task ": " substr($0, 1, 600); next }
        /^(fatal: |failed: \[)/ { if (pending == "") pending = stage ": " task ": " substr($0, 1, 400); next }
        /^\.\.\.ignoring/ { pending = ""; err = ""; next }
        # The failed task'"'"'s stderr (cdlab puts a VM'"'"'s console there): its last lines.
        instderr && /^        / { errn++; errl[errn] = $0; next }
        # Its first line (what failed) and its last ones (where cdlab puts the evidence).
        instderr { instderr = 0; err = (errn > 20 ? "\n" errl[1] "\n        [...]" : ""); for (i = (errn > 20 ? errn - 18 : 1); i <= errn; i++) err = err "\n" errl[i] }
        pending != "" && /^    stderr: / { instderr = 1; errn = 0; next }
        /^(FAILED |ERROR: |E  )/ { out[n++] = stage ": " substr($0, 1, 300) }
        END { flush(); for (i = (n > 4 ? n - 4 : 0); i < n; i++) print out[i]; if (err != "") print stage ", the failed task'"'"'s stderr (last lines):" err }' "$log"
}

# The VMs' console logs (kept by cdlab destroy) go beside the stage logs: a
# CI clone, and the lab state inside it, is gone after the run.
if [ -d .lab/logs ]; then
    cp -r .lab/logs "$logdir/consoles"
fi

echo
echo "suite took $(($(date +%s) - suite_start)) s (logs of each stage: $logdir)"
if [ "$failed" -ne 0 ]; then
    echo "failed stages: ${failures[*]}"
    for name in "${failures[@]}"; do why_failed "$name"; done
fi
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
