# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The API modules from a real ansible-playbook run on localhost against the
live API: the connection options set once with module_defaults and the
action group group/clusterducks.vdisk.api (meta/runtime.yml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from apitest import ADMIN_TOKEN

PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def collections_path():
    """The directory holding ansible_collections/clusterducks/vdisk (conftest puts it on sys.path)."""
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry, 'ansible_collections', 'clusterducks', 'vdisk', 'plugins')):
            return entry
    raise AssertionError('clusterducks.vdisk is not importable')


@pytest.fixture(autouse=True)
def clean(clean_api):
    yield


@pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason='ansible-playbook is not installed beside this Python')
def test_module_defaults_group(service, tmp_path):
    dest = str(tmp_path / 'node07.token')
    play = [{
        'hosts': 'localhost',
        'connection': 'local',
        'gather_facts': False,
        'vars': {'ansible_python_interpreter': sys.executable},
        'module_defaults': {'group/clusterducks.vdisk.api': {
            'url': service.url, 'token': ADMIN_TOKEN, 'ca_path': service.ca}},
        'tasks': [
            {'name': 'A token, with the connection options from module_defaults',
             'clusterducks.vdisk.device_token': {'device': 'node07', 'dest': dest}, 'register': 'issued'},
            {'name': 'Read it back',
             'clusterducks.vdisk.storage_api_info': {'gather_subset': ['tokens'], 'device': 'node07'},
             'register': 'info'},
            {'name': 'An assignment that is not there',
             'clusterducks.vdisk.assignment': {'device': 'node07', 'state': 'absent'}, 'register': 'gone'},
            {'name': 'Check', 'ansible.builtin.assert': {'that': [
                'issued is changed',
                'info.tokens | map(attribute="id") | list == [issued.metadata.id]',
                'gone is not changed',
            ]}},
        ],
    }]
    playbook = tmp_path / 'play.yml'
    playbook.write_text(json.dumps(play))  # JSON is YAML
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_HOME=str(tmp_path / 'home'), ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'),
               ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false', ANSIBLE_DEPRECATION_WARNINGS='true')
    env.pop('ANSIBLE_CONFIG', None)
    proc = subprocess.run([PLAYBOOK, '-i', 'localhost,', str(playbook)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'ok=4' in proc.stdout and 'changed=1' in proc.stdout, proc.stdout
    with open(dest, encoding='utf-8') as handle:
        assert service.session(handle.read().strip()).get(service.url + '/api/v1/boot/node07').status_code == 404
