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

stage() {
    local name=$1; shift
    local start rc
    start=$(date +%s)
    echo "=== $name: $*"
    "$@"
    rc=$?
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

echo
echo "suite took $(($(date +%s) - suite_start)) s"
[ "$failed" -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
