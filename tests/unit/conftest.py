# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make ``ansible_collections.clusterducks.vdisk`` importable for plain pytest.

Under ``ansible-test units`` the checkout already sits in an
``ansible_collections/clusterducks/vdisk`` tree and ansible-test installs its
own collection loader, so nothing is done. From a plain checkout, a temporary
``ansible_collections/clusterducks/vdisk`` symlink to the repository root is
put on ``sys.path`` (nothing is written into the repository).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_COLLECTION = ('ansible_collections', 'clusterducks', 'vdisk')
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _inject():
    parts = _REPO_ROOT.split(os.sep)
    if tuple(parts[-3:]) == _COLLECTION:
        return  # ansible-test, or a checkout inside a collection tree
    tmp = tempfile.mkdtemp(prefix='clusterducks-vdisk-units-')
    atexit.register(shutil.rmtree, tmp, True)
    namespace_dir = os.path.join(tmp, *_COLLECTION[:2])
    os.makedirs(namespace_dir)
    os.symlink(_REPO_ROOT, os.path.join(namespace_dir, _COLLECTION[2]))
    sys.path.insert(0, tmp)


_inject()


import pytest  # noqa: E402 (after the sys.path set-up above)


@pytest.fixture
def lio_model(monkeypatch, tmp_path):
    """A writable rtslib-fb model installed as ``lio.rtslib``; dbroot, save file and host lock under tmp_path."""
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, locking
    from ansible_collections.clusterducks.vdisk.tests.unit.rtslib_model import Model

    model = Model(dbroot=str(tmp_path / 'dbroot'), save_file=str(tmp_path / 'etc' / 'saveconfig.json'))
    monkeypatch.setattr(lio, 'rtslib', model.rtslib)
    monkeypatch.setattr(lio, 'rtslib_root', model.root_module)
    monkeypatch.setattr(lio, 'HAS_RTSLIB', True)
    monkeypatch.setattr(locking, 'LOCK_PATH', str(tmp_path / 'run' / 'clusterducks-vdisk.lock'))
    return model
