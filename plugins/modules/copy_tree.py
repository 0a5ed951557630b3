#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: copy_tree
short_description: Copy a small directory of files from the controller to the host in one transfer, compared by content
version_added: 0.1.0
description:
  - Makes every file of a directory on the controller (a role's C(files/) directory is searched, as for
    M(ansible.builtin.copy)) exist with the same content under O(dest) on the host, with the given owner, group and
    mode. The roles of this collection install their Python packages and the dracut module with it.
  - The whole tree goes to the host in one module run, where M(ansible.builtin.copy) with a directory runs a
    C(stat) and a C(copy) per file. In a TCG lab guest that was 5-6 s per file (C(benchmarks/copy_tree.py) in the
    collection's repository).
  - Files are compared by content, never by modification time, so a fresh checkout or a reinstalled collection
    (new mtimes, same content) changes nothing. A file is only rewritten when its content differs, and then
    atomically (a temporary file in the same directory, renamed over the old one), so a program that imports it
    never reads half a file.
  - Symbolic links on the controller are followed (their targets' content is copied). C(__pycache__) directories and
    C(.pyc) files are left out by default.
  - Files under O(dest) that are not in O(src) are left alone, as M(ansible.builtin.copy) does.
  - Meant for trees of a few MiB at most (the content travels in the module's arguments); a larger tree is refused.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.platform
  - clusterducks.vdisk.attributes.idempotent
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows each file whose content would change (text files in full, binary files by size).
  idempotent:
    support: full
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
options:
  src:
    description:
      - A directory on the controller. A relative path is searched like M(ansible.builtin.copy)'s (the role's
        C(files/) directory first). Its contents, not the directory itself, go under O(dest).
    type: path
    required: true
  dest:
    description: The directory on the host. It is created (with O(directory_mode)) if it does not exist.
    type: path
    required: true
  exclude:
    description: Names (shell patterns, matched against each file and directory name) left out of the copy.
    type: list
    elements: str
    default: ['__pycache__', '*.pyc']
  owner:
    description: The owner of the files and directories (name or number). Unset, new files belong to the remote user.
    type: str
  group:
    description: The group of the files and directories (name or number).
    type: str
  mode:
    description:
      - The mode of the files, octal or symbolic, as in M(ansible.builtin.file).
      - Unset, C(0755) for a file that is executable on the controller and C(0644) for any other.
    type: raw
  directory_mode:
    description: The mode of O(dest) and of the directories under it.
    type: raw
    default: '0755'
  files:
    description:
      - Set by the action plugin from O(src); a playbook never sets it. Each file's path under O(dest), its content
        (base64) and whether it is executable on the controller.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The relative path under O(dest).
        type: str
        required: true
      content:
        description: The content, base64.
        type: str
        required: true
      executable:
        description: Whether the file is executable on the controller.
        type: bool
        default: false
notes:
  - The files are written as they are; nothing is templated. Use M(ansible.builtin.template) for that.
seealso:
  - module: ansible.builtin.copy
  - module: ansible.builtin.unarchive
    description: >-
      Not used here: it compares files by modification time, so every reinstall of the collection (new mtimes)
      would rewrite the files and restart the services, and it overwrites files in place.
"""

EXAMPLES = r"""
- name: Install a role's Python package (roles/ROLE/files/mypkg)
  clusterducks.vdisk.copy_tree:
    src: mypkg
    dest: /usr/lib/mypkg/mypkg
    owner: root
    group: root
  notify: Restart my service

- name: Install a dracut module, every file executable
  clusterducks.vdisk.copy_tree:
    src: 90mymodule
    dest: /usr/lib/dracut/modules.d/90mymodule
    mode: "0755"
"""

RETURN = r"""
dest:
  description: The directory on the host.
  returned: success
  type: str
  sample: /usr/lib/clusterducks-vdisk-api/vdisk_api
changed_files:
  description: The files (paths under O(dest)) whose content was written, or would be in check mode.
  returned: success
  type: list
  elements: str
  sample: [app.py, server.py]
changed_attributes:
  description: The files and directories (paths under O(dest), V(.) for O(dest)) whose owner, group or mode was set,
    or would be in check mode, with the same content.
  returned: success
  type: list
  elements: str
  sample: [lio.py]
file_count:
  description: How many files O(src) has (after O(exclude)).
  returned: success
  type: int
  sample: 11
"""

import base64
import binascii
import grp
import os
import posixpath
import pwd
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

# The content travels in the module's arguments (JSON, base64): keep it small.
MAX_TREE_BYTES = 16 * 1024 * 1024


class TreeError(Exception):
    pass


def relative_path(path):
    """A file's path under dest: relative, normalised, never leaving dest."""
    if not path or path.startswith('/') or '\\' in path or '\0' in path:
        raise TreeError("file path %r: must be a relative path under dest" % path)
    parts = path.split('/')
    if any(part in ('', '.', '..') for part in parts):
        raise TreeError("file path %r: must be a normalised relative path under dest (no '.', '..' or '//')" % path)
    return posixpath.join(*parts)


def decode_files(files):
    """The files' paths and bytes, checked before anything is touched."""
    seen = {}
    total = 0
    for f in files:
        path = relative_path(f['path'])
        if path in seen:
            raise TreeError("file path %r: given twice" % path)
        try:
            data = base64.b64decode(f['content'], validate=True)
        except (binascii.Error, ValueError) as e:
            raise TreeError("file path %r: content is not base64: %s" % (path, e))
        total += len(data)
        if total > MAX_TREE_BYTES:
            raise TreeError("the tree is over %d MiB; copy_tree is meant for small trees (use ansible.builtin.unarchive)"
                            % (MAX_TREE_BYTES >> 20))
        seen[path] = (data, bool(f.get('executable')))
    for path in seen:
        # A file cannot also be a directory of another file.
        parent = posixpath.dirname(path)
        while parent:
            if parent in seen:
                raise TreeError("file path %r: %r is also given as a file" % (path, parent))
            parent = posixpath.dirname(parent)
    return seen


def read_existing(target):
    """The bytes of the file at target, None if there is none; refuses anything that is not a regular file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if not os.path.isfile(target) or os.path.islink(target):
        raise TreeError("%s exists and is not a regular file; nothing was changed" % target)
    if st.st_size > MAX_TREE_BYTES:
        return b''  # differs from anything we could be asked to write
    with open(target, 'rb') as f:
        return f.read()


def diff_entry(target, before, after):
    def show(data):
        if data is None:
            return ''
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError:
            return '(binary, %d bytes)\n' % len(data)
        return text if '\0' not in text else '(binary, %d bytes)\n' % len(data)
    return {'before_header': target if before is not None else '%s (absent)' % target,
            'after_header': target, 'before': show(before), 'after': show(after)}


class CopyTree:
    """One walk (plan) finds what differs; run() carries out exactly that plan, or only reports it in check mode."""

    def __init__(self, module):
        self.module = module
        p = module.params
        self.dest = p['dest']
        self.files = decode_files(p['files'])
        self.common = {'owner': p['owner'], 'group': p['group']}
        self.mode = p['mode']
        self.directory_mode = p['directory_mode']

    def file_args(self, path, executable):
        mode = self.mode if self.mode is not None else ('0755' if executable else '0644')
        return dict(self.common, path=path, mode=mode, secontext=None, attributes=None)

    def dir_args(self, path):
        return dict(self.common, path=path, mode=self.directory_mode, secontext=None, attributes=None)

    def check_settings(self):
        """Owner, group and modes are checked first: a bad one must not fail halfway through the copy."""
        if not os.path.isabs(self.dest):
            raise TreeError("dest %r: must be an absolute path" % self.dest)
        for key, lookup in (('owner', pwd.getpwnam), ('group', grp.getgrnam)):
            value = self.common[key]
            if value is not None and not value.isdigit():
                try:
                    lookup(value)
                except KeyError:
                    raise TreeError("%s %r: no such %s on the host; nothing was changed" % (key, value, key))
        for key in ('mode', 'directory_mode'):
            value = self.mode if key == 'mode' else self.directory_mode
            if value is None or isinstance(value, int) or re.match(r'^0?[0-7]{3,4}$', str(value)):
                continue
            try:
                self.module._symbolic_mode_to_octal(os.stat('/'), str(value))
            except ValueError as e:
                raise TreeError("%s %r: %s; nothing was changed" % (key, value, to_native(e)))

    def plan(self):
        self.check_settings()
        dirs = {''}
        for path in self.files:
            parent = posixpath.dirname(path)
            while parent:
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        make_dirs, writes = [], []
        for d in sorted(dirs):
            target = os.path.join(self.dest, d) if d else self.dest
            if os.path.lexists(target) and (os.path.islink(target) or not os.path.isdir(target)):
                raise TreeError("%s exists and is not a directory; nothing was changed" % target)
            if not os.path.lexists(target):
                make_dirs.append(d)
        for path in sorted(self.files):
            data, executable = self.files[path]
            target = os.path.join(self.dest, path)
            before = read_existing(target)
            if before != data:
                writes.append((path, before))
        return sorted(dirs), make_dirs, writes

    def set_attributes(self, args, label, changed_attributes):
        # In check mode this only reports; it changes nothing.
        if self.module.set_fs_attributes_if_different(args, False):
            changed_attributes.append(label)

    def run(self):
        dirs, make_dirs, writes = self.plan()
        check = self.module.check_mode
        changed_attributes = []
        for d in make_dirs:
            if not check:
                target = os.path.join(self.dest, d) if d else self.dest
                # Its real mode and owner follow, before any file goes in. Missing
                # parents of dest are made as mkdir -p would.
                os.makedirs(target, 0o700)
                self.module.set_fs_attributes_if_different(self.dir_args(target), False)
        for d in dirs:
            if d not in make_dirs:
                target = os.path.join(self.dest, d) if d else self.dest
                self.set_attributes(self.dir_args(target), d or '.', changed_attributes)
        written = {path for path, _before in writes}
        for path, _before in writes:
            if not check:
                self.write(path)
        for path in sorted(self.files):
            if path not in written and os.path.exists(os.path.join(self.dest, path)):
                self.set_attributes(self.file_args(os.path.join(self.dest, path), self.files[path][1]), path,
                                    changed_attributes)
        result = {
            'changed': bool(make_dirs or writes or changed_attributes),
            'dest': self.dest,
            'changed_files': [path for path, _before in writes],
            'changed_attributes': changed_attributes,
            'file_count': len(self.files),
        }
        if self.module._diff:
            result['diff'] = [diff_entry(os.path.join(self.dest, path), before, self.files[path][0])
                              for path, before in writes]
        return result

    def write(self, path):
        """Atomically: the file appears whole, with its owner and mode, or not at all.

        Not module_utils/atomic.write_atomic: that takes an octal mode and a gid, and copy_tree's owner, group and
        (symbolic) mode go through AnsibleModule's own attribute setter, as in ansible.builtin.copy.
        """
        data, executable = self.files[path]
        target = os.path.join(self.dest, path)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(target), dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.module.set_fs_attributes_if_different(self.file_args(tmp, executable), False)
            os.rename(tmp, target)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path', required=True),  # read by the action plugin
            dest=dict(type='path', required=True),
            exclude=dict(type='list', elements='str', default=['__pycache__', '*.pyc']),  # the action plugin's
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw'),
            directory_mode=dict(type='raw', default='0755'),
            files=dict(type='list', elements='dict', default=[], options=dict(
                path=dict(type='str', required=True),
                content=dict(type='str', required=True, no_log=False),
                executable=dict(type='bool', default=False),
            )),
        ),
        supports_check_mode=True,
    )
    try:
        result = CopyTree(module).run()
    except TreeError as e:
        module.fail_json(msg=to_native(e))
    except (OSError, IOError) as e:
        module.fail_json(msg="copying to %s failed: %s" % (module.params['dest'], to_native(e)))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
