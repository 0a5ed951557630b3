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
    # pytest exits 5 when it collected nothing: a suite that ran no test has failed.
    if [ "$rc" -eq 5 ]; then echo "=== $name: no tests were collected"; fi
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "=== $name: PASSED in $(($(date +%s) - start)) s"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED (exit $rc) in $(($(date +%s) - start)) s"
    fi
}

if [ "${1:-}" != lab ]; then
    stage unit pytest -q
    stage sanity tests/ansible-test.sh sanity
    stage lint make --no-print-directory lint
    stage collection tests/collection-build.sh
fi

# Build (or find cached) the lab image once, before scenarios boot VMs from it.
stage lab-image python3 lab/cdlab image
for scenario in extensions/molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$scenario")")
    stage "scenario $name" molecule test -s "$name"
done

why_failed() {
    local log="$logdir/${1// /_}.log"
    echo
    echo "=== why $1 failed (from $log)"
    # Ansible's failures, pytest's and ansible-test's errors, then the tail.
    grep -n -E -A12 'fatal: |failed: \[|^(FAILED|ERROR)|^E  |ERROR: ' "$log" | head -n 80
    echo "--- last lines"
    tail -n 25 "$log"
}

echo
for name in "${failures[@]}"; do why_failed "$name"; done
echo
echo "suite took $(($(date +%s) - suite_start)) s"
[ "$failed" -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
