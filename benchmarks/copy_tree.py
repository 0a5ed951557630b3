# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long a role takes to install a directory of the collection's files on a host:
ansible.builtin.copy of the directory (the baseline) against clusterducks.vdisk.copy_tree.

    python3 benchmarks/copy_tree.py -i .lab/demo/inventory.yml --host storage [--rounds 3]

For each tree (the storage API's Python package, the dracut module) and each
way, one ansible-playbook run installs it into an empty directory ("fresh") and
a second run finds nothing to do ("unchanged", every role run after the first).
The two ways alternate, round after round, so drift in the machine hits both.
The task's own time is read from the profile_tasks callback; the run's wall
time includes Ansible's start (the same for both). The directories are
/tmp/cdvdisk-bench-* on the host, removed at the end.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = {
    'vdisk_api': os.path.join(REPO, 'roles', 'storage_api', 'files', 'vdisk_api'),
    'dracut module': os.path.join(REPO, 'roles', 'dracut_overlay', 'files', '90clusterducks-vdisk'),
}
TASK = {
    'copy': "ansible.builtin.copy: {src: '%s/', dest: '%s/', owner: root, group: root, mode: 'u=rwX,go=rX'}",
    'copy_tree': "clusterducks.vdisk.copy_tree: {src: '%s', dest: '%s', owner: root, group: root}",
}
PROFILE_RE = re.compile(r'^BENCH install -+ (\d+\.\d+)s$', re.M)


def playbook(host, task):
    return """- hosts: %s
  gather_facts: false
  become: true
  tasks:
    - name: BENCH install
      %s
""" % (host, task)


def run(args, way, tree, dest, workdir, env):
    path = os.path.join(workdir, 'bench.yml')
    with open(path, 'w') as f:
        f.write(playbook(args.host, TASK[way] % (TREES[tree], dest)))
    out = subprocess.run([args.ansible_playbook, '-i', args.inventory, path], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=False).stdout
    m = PROFILE_RE.search(out)
    if m is None or 'failed=0' not in out:
        sys.exit('%s of %s failed:\n%s' % (way, tree, out))
    changed = re.search(r'changed=(\d+)', out).group(1) != '0'
    return float(m.group(1)), changed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-i', '--inventory', required=True)
    ap.add_argument('--host', required=True)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--ansible-playbook', default=os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'))
    args = ap.parse_args()

    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED='ansible.posix.profile_tasks', ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_PIPELINING='True')
    times = {}
    clean = [args.ansible_playbook.replace('ansible-playbook', 'ansible'), '-i', args.inventory, args.host, '-b',
             '-m', 'ansible.builtin.shell', '-a', 'rm -rf /tmp/cdvdisk-bench-*']
    subprocess.run(clean, env=env, stdout=subprocess.DEVNULL, check=True)
    with tempfile.TemporaryDirectory() as workdir:
        for rnd in range(args.rounds):
            for tree in TREES:
                ways = list(TASK) if rnd % 2 == 0 else list(reversed(TASK))
                for way in ways:
                    dest = '/tmp/cdvdisk-bench-%s-%d-%s' % (way, rnd, tree.replace(' ', '_'))
                    fresh, changed1 = run(args, way, tree, dest, workdir, env)
                    again, changed2 = run(args, way, tree, dest, workdir, env)
                    if not changed1 or changed2:
                        sys.exit('%s of %s: expected changed then unchanged, got %s then %s'
                                 % (way, tree, changed1, changed2))
                    times.setdefault((tree, way, 'fresh'), []).append(fresh)
                    times.setdefault((tree, way, 'unchanged'), []).append(again)
                    print('round %d %-13s %-9s fresh %6.2f s  unchanged %6.2f s' % (rnd + 1, tree, way, fresh, again),
                          flush=True)
        subprocess.run(clean, env=env, stdout=subprocess.DEVNULL, check=False)

    files = {tree: sum(len([n for n in names if not n.endswith('.pyc')]) for d, _dirs, names in os.walk(path)
                       if '__pycache__' not in d)
             for tree, path in TREES.items()}
    print('\nmedian (min-max) of the task time over %d rounds, seconds' % args.rounds)
    for tree in TREES:
        for case in ('fresh', 'unchanged'):
            base, new = times[(tree, 'copy', case)], times[(tree, 'copy_tree', case)]
            print('%-13s (%2d files) %-9s  copy %6.2f (%.2f-%.2f)  copy_tree %6.2f (%.2f-%.2f)  ratio %.2f' % (
                tree, files[tree], case, statistics.median(base), min(base), max(base), statistics.median(new),
                min(new), max(new), statistics.median(base) / statistics.median(new)))


if __name__ == '__main__':
    main()
