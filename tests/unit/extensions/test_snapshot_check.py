# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""storage_api's snapshot checker: which missing minutes are gaps (the guard's deletions are not, others are)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    'snapshot_check', os.path.join(HERE, '..', '..', '..', 'extensions', 'molecule', 'storage_api', 'files',
                                   'snapshot_check.py'))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)

# 15:35 ... 15:39 and 15:41, 15:42 checked; 15:40 taken and deleted by the guard before the watcher reached it.
BASE = 1796398502  # 2026-12-04T15:35:02Z
TAKEN = [BASE + 60 * i for i in range(8)]
GUARD = ['guard: pool at 75.1% data, 10.8% metadata, over its reserve line (75%): deleted 3 oldest scheduled '
         'snapshots, now 60.2% / 10.6%: rb@auto-20261204T154002Z filler@auto-20261204T154002Z log@auto-20261204T154002Z']


def bounds(tmp_path, checked, journal, vdisk='log', minutes=5):
    out = tmp_path / 'checks.jsonl'
    out.write_text(''.join(json.dumps({'snapshot': 'auto-' + sc.datetime.datetime.fromtimestamp(
        t, sc.datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ'), 'created': t, 'mounted': True,
        'xfs_repair_clean': True, 'records': 10}) + '\n' for t in checked))
    acks = tmp_path / 'acks'
    acks.write_text('')
    sc.judge = lambda entry, acks, margin: True  # the records' bounds are not what is tested here
    rc = sc.bounds(str(out), str(acks), 2.0, minutes, vdisk, journal=lambda: journal)
    return rc


@pytest.mark.parametrize('checked, journal, vdisk, rc', [
    (TAKEN, [], 'log', 0),                                       # every minute checked
    (TAKEN[:5] + TAKEN[6:], GUARD, 'log', 0),                    # 15:40 deleted by the guard: no gap
    (TAKEN[:5] + TAKEN[6:], [], 'log', 1),                       # 15:40 missing, nothing deleted it: a gap
    (TAKEN[:5] + TAKEN[6:], [GUARD[0].replace('log@', 'other@')], 'log', 1),  # the guard deleted another vDisk's
    (TAKEN[:5] + TAKEN[6:], GUARD, None, 1),                     # without VDISK, the old rule: a gap
    (TAKEN[:3] + TAKEN[6:], GUARD, 'log', 1),                    # 15:38 and 15:39 missing as well
    (TAKEN[:2], [], 'log', 1),                                   # fewer minutes than asked for
])
def test_which_missing_minutes_are_gaps(tmp_path, capsys, checked, journal, vdisk, rc):
    assert bounds(tmp_path, checked, journal, vdisk) == rc, capsys.readouterr().out


def test_the_command_line_takes_the_vdisk(tmp_path, monkeypatch, capsys):
    """The verify runs `bounds OUT ACKS MARGIN MINUTES log`: main must hand the vDisk on (it printed its usage)."""
    out = tmp_path / 'checks.jsonl'
    out.write_text(''.join(json.dumps({'snapshot': 'x%d' % t, 'created': t, 'mounted': True, 'xfs_repair_clean': True,
                                       'records': 10}) + '\n' for t in TAKEN[:5] + TAKEN[6:]))
    (tmp_path / 'acks').write_text('')
    monkeypatch.setattr(sc, 'judge', lambda entry, acks, margin: True)
    monkeypatch.setattr(sc, 'guard_journal', lambda: GUARD)
    monkeypatch.setattr(sc.bounds, '__defaults__', (None, sc.guard_journal))
    assert sc.main(['bounds', str(out), str(tmp_path / 'acks'), '2', '5', 'log']) == 0
    assert json.loads(capsys.readouterr().out)['consecutive_minutes'] is True
