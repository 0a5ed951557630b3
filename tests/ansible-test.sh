#!/usr/bin/env bash
# Run ansible-test on a fresh copy of the collection, so it also works on
# uncommitted files and never writes into the checkout.
#   usage: tests/ansible-test.sh sanity|units [extra ansible-test args...]
# The copy is build/ansible_collections/clusterducks/vdisk: ansible-test only
# runs inside an ansible_collections/<namespace>/<name> tree. --venv makes it
# build its own pinned test virtualenvs (pip, PyPI) instead of using docker.
set -euo pipefail

usage() {
    echo "usage: $0 sanity|units [extra ansible-test args...]" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
command=$1
shift
case "$command" in
    sanity | units) ;;
    *) usage ;;
esac

# ansible-test bootstraps pip into its empty venvs with a get-pip.py fetched
# from ci-files.testing.ansible.com, which is not reachable here (PyPI is).
# Provide the script it would cache: pip from the stdlib's ensurepip, then
# upgraded to the pinned version from the package index.
bootstrap_pip() {
    local version cache
    version=$("$repo/.venv/bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
    cache=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
    [ -e "$cache" ] && return
    mkdir -p "$(dirname "$cache")"
    cat >"$cache" <<'PY'
# Stand-in for get-pip.py written by tests/ansible-test.sh.
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$repo/build/ansible_collections/clusterducks/vdisk
python_version=${ANSIBLE_TEST_PYTHON:-3.11}

rm -rf "$dest"
mkdir -p "$dest"

# Tracked and untracked-but-not-ignored files; skip tracked files deleted in
# the worktree (tar would fail on them).
cd "$repo"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do
        if [ -e "$path" ] || [ -L "$path" ]; then
            printf '%s\0' "$path"
        fi
    done |
    sort -zu |
    tar --null --no-recursion -T - -cf - |
    tar -xf - -C "$dest"

# ansible-test keeps its virtualenvs and caches under $HOME. Give it a home of
# its own outside the checkout, so a fresh clone (CI) reuses the venvs it built.
export HOME=${ANSIBLE_TEST_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/clusterducks-vdisk/ansible-test-home}
mkdir -p "$HOME"
bootstrap_pip

# ansible-test lists files through the nearest .git walking upwards; without
# its own repository the copy would be seen as ignored files of the checkout.
cd "$dest"
git init -q .
export PATH="$repo/.venv/bin:$PATH"
exec ansible-test "$command" --venv --python "$python_version" "$@"
