# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""copy_tree on the controller: read the source tree and hand it to the module in one run."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.clusterducks.vdisk.plugins.plugin_utils.copy_tree import (DEFAULT_EXCLUDE, TreeSourceError,
                                                                                   collect_files)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False  # the content goes in the module's arguments, no remote temporary file

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        del tmp

        args = self._task.args.copy()
        src = args.get('src')
        if not src or not isinstance(src, str):
            raise AnsibleActionFail("copy_tree: src (a directory on the controller) is required")
        if 'files' in args:
            raise AnsibleActionFail("copy_tree: files is set from src by the action, not by a task")
        exclude = args.get('exclude', DEFAULT_EXCLUDE)
        if isinstance(exclude, str):
            exclude = [exclude]
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise AnsibleActionFail("copy_tree: exclude must be a list of name patterns")

        source = self._find_needle('files', src)
        if not os.path.isdir(source):
            raise AnsibleActionFail("copy_tree: src %s is not a directory on the controller" % source)
        try:
            args['files'] = collect_files(source, exclude)
        except (TreeSourceError, OSError) as e:
            raise AnsibleActionFail("copy_tree: %s" % e)
        if not args['files']:
            raise AnsibleActionFail("copy_tree: src %s has no files (after exclude %s)" % (source, exclude))

        try:
            result.update(self._execute_module(module_name='clusterducks.vdisk.copy_tree', module_args=args,
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        # The content is in the files; the result need not carry it a second time.
        invocation_args = result.get('invocation', {}).get('module_args', {})
        if 'files' in invocation_args:
            invocation_args['files'] = '(%d files from %s)' % (len(args['files']), source)
        return result
