# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The modules' documentation as ansible-doc renders it (doc fragments merged):
every attribute complete, the API modules' options as their argument specs
say, their action group as meta/runtime.yml declares it. A cheap stand-in for
part of ansible-test sanity's validate-modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.clusterducks.vdisk.plugins.modules import assignment, device_token, storage_api_info

from test_playbook import collections_path

ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_MODULES = {'assignment': assignment, 'device_token': device_token, 'storage_api_info': storage_api_info}


@pytest.fixture(scope='module')
def docs(tmp_path_factory):
    if not os.path.exists(ANSIBLE_DOC):
        pytest.skip('ansible-doc is not installed beside this Python')
    names = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, 'plugins', 'modules'))
                   if n.endswith('.py') and not n.startswith('_'))
    home = str(tmp_path_factory.mktemp('ansible-home'))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_HOME=home, ANSIBLE_NOCOLOR='1')
    env.pop('ANSIBLE_CONFIG', None)
    proc = subprocess.run([ANSIBLE_DOC, '--json'] + ['clusterducks.vdisk.' + n for n in names], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    found = json.loads(proc.stdout)
    assert sorted(found) == ['clusterducks.vdisk.' + n for n in names]
    return dict((name.split('.')[-1], value) for name, value in found.items())


def test_every_attribute_has_a_description_and_a_support_level(docs):
    for name, doc in docs.items():
        for attribute, spec in doc['doc']['attributes'].items():
            assert spec.get('description') and spec.get('support') in ('full', 'partial', 'none', 'N/A'), \
                (name, attribute, spec)
            if spec['support'] == 'partial':
                assert spec.get('details'), (name, attribute)


@pytest.mark.parametrize('name', sorted(API_MODULES))
def test_api_modules_attributes(docs, name):
    attributes = docs[name]['doc']['attributes']
    assert attributes['idempotent']['support'] == ('partial' if name == 'device_token' else 'full')
    assert attributes['action_group']['membership'] == ['clusterducks.vdisk.api']
    with open(os.path.join(REPO, 'meta', 'runtime.yml'), encoding='utf-8') as handle:
        assert name in yaml.safe_load(handle)['action_groups']['api']


def _compare(doc_options, spec, where):
    assert sorted(doc_options) == sorted(spec), where
    for key, option in spec.items():
        doc = doc_options[key]
        here = '%s.%s' % (where, key)
        assert doc['type'] == option.get('type', 'str'), here
        assert doc.get('default') == option.get('default'), here
        assert doc.get('required', False) == option.get('required', False), here
        assert doc.get('choices') == option.get('choices'), here
        assert doc.get('elements') == option.get('elements'), here
        assert sorted(doc.get('aliases', [])) == sorted(option.get('aliases', [])), here
        assert doc.get('description'), here
        if 'options' in option:
            _compare(doc['suboptions'], option['options'], here)


@pytest.mark.parametrize('name', sorted(API_MODULES))
def test_api_modules_options_match_the_argument_spec(docs, name):
    _compare(docs[name]['doc']['options'], API_MODULES[name].argument_spec(), name)
    assert yaml.safe_load(docs[name]['examples'])
    assert docs[name]['return']
