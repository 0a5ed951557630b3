# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""lio.apply_changes: all steps and one save, or everything undone (and saved if an undo fails)."""

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio


class Run(object):
    def __init__(self, monkeypatch, fail=(), fail_undo=(), fail_save=False):
        self.log = []
        self.fail, self.fail_undo, self.fail_save = fail, fail_undo, fail_save
        monkeypatch.setattr(lio, 'save_config', self.save)

    def save(self, root, path=None):
        self.log.append('save')
        if self.fail_save:
            self.fail_save -= 1
            raise OSError(28, 'No space left on device')
        return '/etc/rtslib-fb-target/saveconfig.json'

    def step(self, name, exc=RuntimeError):
        def do():
            self.log.append('do ' + name)
            if name in self.fail:
                raise exc('%s broke' % name)

        def undo():
            self.log.append('undo ' + name)
            if name in self.fail_undo:
                raise RuntimeError('%s stuck' % name)
        return ('target %s' % name, do, undo)

    def apply(self, *names, **kwargs):
        lio.apply_changes(object(), [self.step(n, **kwargs) for n in names])


def test_all_steps_then_one_save(monkeypatch):
    run = Run(monkeypatch)
    run.apply('a', 'b')
    assert run.log == ['do a', 'do b', 'save']
    run.log[:] = []
    run.apply()
    assert run.log == []  # nothing changed, nothing saved


def test_a_failing_step_undoes_it_and_the_earlier_ones_in_reverse(monkeypatch):
    run = Run(monkeypatch, fail=('b',))
    with pytest.raises(lio.ChangeFailed) as excinfo:
        run.apply('a', 'b', 'c')
    assert run.log == ['do a', 'do b', 'undo b', 'undo a']  # c never ran; the save file was not written
    assert str(excinfo.value) == ('changing LIO failed at target b: b broke. Put back as before this run: target b, '
                                  'target a. LIO and its save file are as before this run.')


def test_a_failing_undo_saves_what_is_live(monkeypatch):
    run = Run(monkeypatch, fail=('c',), fail_undo=('a',))
    with pytest.raises(lio.ChangeFailed) as excinfo:
        run.apply('a', 'b', 'c')
    assert run.log == ['do a', 'do b', 'do c', 'undo c', 'undo b', 'undo a', 'save']
    msg = str(excinfo.value)
    assert 'Put back as before this run: target c, target b.' in msg
    assert 'Could not put back: target a (a stuck).' in msg
    assert 'saved to /etc/rtslib-fb-target/saveconfig.json' in msg


def test_when_saving_fails_everything_is_undone(monkeypatch):
    run = Run(monkeypatch, fail_save=1)
    with pytest.raises(lio.ChangeFailed, match='^saving LIO.s configuration to .* failed: .*No space left'):
        run.apply('a', 'b')
    assert run.log == ['do a', 'do b', 'save', 'undo b', 'undo a']


def test_an_undo_and_the_save_failing_says_they_differ(monkeypatch):
    run = Run(monkeypatch, fail=('b',), fail_undo=('a',), fail_save=1)
    with pytest.raises(lio.ChangeFailed, match='LIO and its save file differ until a run succeeds'):
        run.apply('a', 'b')


def test_an_interrupt_is_undone_and_raised_as_it_was(monkeypatch):
    run = Run(monkeypatch, fail=('b',))
    with pytest.raises(KeyboardInterrupt):
        run.apply('a', 'b', exc=KeyboardInterrupt)
    assert run.log == ['do a', 'do b', 'undo b', 'undo a']
