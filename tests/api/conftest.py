# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures: one storage API process for the session (see apitest.py)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apitest import Service, make_pki  # noqa: E402 pylint: disable=wrong-import-position


def _inject_collection():
    """Make ansible_collections.clusterducks.vdisk importable (as tests/unit/conftest.py does)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if repo.split(os.sep)[-3:] == ['ansible_collections', 'clusterducks', 'vdisk']:
        return
    tmp = tempfile.mkdtemp(prefix='clusterducks-vdisk-api-tests-')
    atexit.register(shutil.rmtree, tmp, True)
    os.makedirs(os.path.join(tmp, 'ansible_collections', 'clusterducks'))
    os.symlink(repo, os.path.join(tmp, 'ansible_collections', 'clusterducks', 'vdisk'))
    sys.path.insert(0, tmp)


_inject_collection()


@pytest.fixture(scope='session')
def pki(tmp_path_factory):
    if shutil.which('openssl') is None:
        pytest.fail('openssl is required for the API tests')
    directory = str(tmp_path_factory.mktemp('pki'))
    make_pki(directory)
    return directory


@pytest.fixture(scope='session')
def service(tmp_path_factory, pki):
    svc = Service(str(tmp_path_factory.mktemp('api')), pki).start()
    yield svc
    svc.stop()


@pytest.fixture
def admin(service):
    return service.session()


@pytest.fixture
def clean_api(service):
    """After the test, delete every assignment and device token it left in the shared service."""
    yield
    admin = service.session()
    for assignment in admin.get(service.url + '/api/v1/assignments').json()['assignments']:
        admin.delete(service.url + '/api/v1/assignments/' + assignment['device'])
    for token in admin.get(service.url + '/api/v1/tokens').json()['tokens']:
        admin.delete(service.url + '/api/v1/tokens/' + token['id'])
