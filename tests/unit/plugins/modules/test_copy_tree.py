# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""copy_tree: the controller's walk (action plugin) and the host's plan and copy (module), on a temporary tree."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from ansible_collections.clusterducks.vdisk.plugins.plugin_utils.copy_tree import (DEFAULT_EXCLUDE, TreeSourceError,
                                                                                   collect_files)
from ansible_collections.clusterducks.vdisk.plugins.modules import copy_tree

from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import (ExitJson, FailJson, patch_module_args,
                                                                              raise_on_exit)


@pytest.fixture(autouse=True)
def _exit(monkeypatch):
    raise_on_exit(monkeypatch)


def source_tree(tmp_path):
    src = tmp_path / 'src'
    (src / 'pkg' / '__pycache__').mkdir(parents=True)
    (src / 'pkg' / '__init__.py').write_text('')
    (src / 'pkg' / 'app.py').write_text('print("app")\n')
    (src / 'pkg' / '__pycache__' / 'app.cpython-311.pyc').write_bytes(b'\x00pyc')
    (src / 'pkg' / 'stray.pyc').write_bytes(b'\x00pyc')
    (src / 'run.sh').write_text('#!/bin/sh\n')
    (src / 'run.sh').chmod(0o755)
    shared = tmp_path / 'shared.py'
    shared.write_text('SHARED = 1\n')
    (src / 'pkg' / 'shared.py').symlink_to(shared)
    return src


def run(args, check=False, diff=False):
    args = dict(args)
    args.setdefault('src', 'src')
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as e:
            copy_tree.main()
    return e.type is ExitJson, e.value.args[0]


def test_collect_follows_links_and_leaves_out_bytecode(tmp_path):
    files = collect_files(str(source_tree(tmp_path)), DEFAULT_EXCLUDE)
    assert [f['path'] for f in files] == ['pkg/__init__.py', 'pkg/app.py', 'pkg/shared.py', 'run.sh']
    by_path = {f['path']: f for f in files}
    assert base64.b64decode(by_path['pkg/shared.py']['content']) == b'SHARED = 1\n'
    assert by_path['run.sh']['executable'] and not by_path['pkg/app.py']['executable']


def test_collect_refuses_a_broken_link(tmp_path):
    src = source_tree(tmp_path)
    (src / 'gone.py').symlink_to(tmp_path / 'nothing-here')
    with pytest.raises((TreeSourceError, OSError)):
        collect_files(str(src), DEFAULT_EXCLUDE)


def test_copy_then_idempotent_then_repairs_drift(tmp_path):
    files = collect_files(str(source_tree(tmp_path)), DEFAULT_EXCLUDE)
    dest = tmp_path / 'dest' / 'lib'
    ok, res = run({'dest': str(dest), 'files': files})
    assert ok and res['changed'] and res['changed_files'] == ['pkg/__init__.py', 'pkg/app.py', 'pkg/shared.py',
                                                              'run.sh']
    assert (dest / 'pkg' / 'app.py').read_text() == 'print("app")\n'
    assert not (dest / 'pkg' / '__pycache__').exists()
    assert stat.S_IMODE(os.stat(dest / 'run.sh').st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / 'pkg' / 'app.py').st_mode) == 0o644
    assert stat.S_IMODE(os.stat(dest / 'pkg').st_mode) == 0o755
    assert not (dest / 'pkg' / 'shared.py').is_symlink()

    # New mtimes with the same content (a fresh checkout, a reinstalled collection) change nothing.
    os.utime(dest / 'pkg' / 'app.py', (1, 1))
    ok, res = run({'dest': str(dest), 'files': files})
    assert ok and not res['changed'] and res['changed_files'] == [] and res['changed_attributes'] == []

    # Drift: content and mode changed by hand are put back; the unchanged file is not rewritten.
    (dest / 'pkg' / 'app.py').write_text('print("edited")\n')
    os.chmod(dest / 'run.sh', 0o600)
    inode = os.stat(dest / 'pkg' / '__init__.py').st_ino
    ok, res = run({'dest': str(dest), 'files': files}, diff=True)
    assert ok and res['changed_files'] == ['pkg/app.py'] and res['changed_attributes'] == ['run.sh']
    assert res['diff'] == [{'before_header': str(dest / 'pkg' / 'app.py'), 'after_header': str(dest / 'pkg' / 'app.py'),
                            'before': 'print("edited")\n', 'after': 'print("app")\n'}]
    assert (dest / 'pkg' / 'app.py').read_text() == 'print("app")\n'
    assert stat.S_IMODE(os.stat(dest / 'run.sh').st_mode) == 0o755
    assert os.stat(dest / 'pkg' / '__init__.py').st_ino == inode
    assert not [n for n in os.listdir(dest / 'pkg') if n.startswith('.')], 'no temporary file left behind'


def test_check_mode_reports_and_changes_nothing(tmp_path):
    files = collect_files(str(source_tree(tmp_path)), DEFAULT_EXCLUDE)
    dest = tmp_path / 'dest'
    ok, res = run({'dest': str(dest), 'files': files}, check=True, diff=True)
    assert ok and res['changed'] and len(res['changed_files']) == 4 and len(res['diff']) == 4
    assert res['diff'][0]['before_header'].endswith('(absent)')
    assert not dest.exists()

    run({'dest': str(dest), 'files': files})
    (dest / 'pkg' / 'app.py').write_text('x\n')
    ok, res = run({'dest': str(dest), 'files': files}, check=True)
    assert ok and res['changed'] and res['changed_files'] == ['pkg/app.py']
    assert (dest / 'pkg' / 'app.py').read_text() == 'x\n'


def test_mode_given_applies_to_every_file(tmp_path):
    files = collect_files(str(source_tree(tmp_path)), DEFAULT_EXCLUDE)
    dest = tmp_path / 'dest'
    ok, res = run({'dest': str(dest), 'files': files, 'mode': 'u=rwx,go=rx'})
    assert ok and stat.S_IMODE(os.stat(dest / 'pkg' / 'app.py').st_mode) == 0o755


@pytest.mark.parametrize('args, message', [
    ({'files': [{'path': '../etc/passwd', 'content': ''}]}, "no '.', '..'"),
    ({'files': [{'path': '/etc/passwd', 'content': ''}]}, 'must be a relative path'),
    ({'files': [{'path': 'a//b', 'content': ''}]}, "no '.', '..'"),
    ({'files': [{'path': 'a', 'content': 'not base64!'}]}, 'not base64'),
    ({'files': [{'path': 'a', 'content': ''}, {'path': 'a', 'content': ''}]}, 'given twice'),
    ({'files': [{'path': 'a', 'content': ''}, {'path': 'a/b', 'content': ''}]}, 'also given as a file'),
    ({'owner': 'no-such-user-here', 'files': [{'path': 'a', 'content': ''}]}, 'no such owner'),
    ({'group': 'no-such-group-here', 'files': [{'path': 'a', 'content': ''}]}, 'no such group'),
    ({'mode': 'u=banana', 'files': [{'path': 'a', 'content': ''}]}, "mode 'u=banana'"),
    ({'directory_mode': 'q+r', 'files': [{'path': 'a', 'content': ''}]}, "directory_mode 'q+r'"),
])
def test_bad_input_is_refused_and_changes_nothing(tmp_path, args, message):
    dest = tmp_path / 'dest'
    ok, res = run(dict(args, dest=str(dest)))
    assert not ok and message in res['msg'], res['msg']
    assert not dest.exists()


def test_relative_dest_is_refused(tmp_path):
    ok, res = run({'dest': 'relative/dir', 'files': [{'path': 'a', 'content': ''}]})
    assert not ok and 'must be an absolute path' in res['msg']


def test_a_directory_or_link_where_a_file_goes_is_refused_before_any_change(tmp_path):
    dest = tmp_path / 'dest'
    (dest / 'b').mkdir(parents=True)
    (dest / 'c.py').symlink_to(tmp_path / 'elsewhere')
    files = [{'path': 'a.py', 'content': base64.b64encode(b'a').decode()},
             {'path': 'b', 'content': base64.b64encode(b'b').decode()}]
    ok, res = run({'dest': str(dest), 'files': files})
    assert not ok and 'is not a regular file' in res['msg']
    assert not (dest / 'a.py').exists()
    ok, res = run({'dest': str(dest), 'files': [{'path': 'c.py', 'content': ''}]})
    assert not ok and 'is not a regular file' in res['msg']
    assert (dest / 'c.py').is_symlink()


def test_a_tree_too_large_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(copy_tree, 'MAX_TREE_BYTES', 10)
    files = [{'path': 'a', 'content': base64.b64encode(b'x' * 11).decode()}]
    ok, res = run({'dest': str(tmp_path / 'dest'), 'files': files})
    assert not ok and 'small trees' in res['msg']
