# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    ValidationError,
    check_chap,
    check_iqn,
    check_name,
    format_size,
    parse_size,
)


@pytest.mark.parametrize('text,expected', [
    ('10G', 10 << 30), ('10GiB', 10 << 30), ('512M', 512 << 20), ('1.5G', 1536 << 20),
    ('1T', 1 << 40), ('1GB', 1000 ** 3 + (-(1000 ** 3) % (1 << 20))), (1 << 30, 1 << 30),
    ('1', 1 << 20),  # rounded up to a whole MiB
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize('text', ['', 'G', '-1G', '0', '12Q', 'ten', True, '1.2.3G'])
def test_parse_size_rejects(text):
    with pytest.raises(ValidationError):
        parse_size(text)


def test_format_size():
    assert format_size(10 << 30) == '10G'
    assert format_size(1536 << 20) == '1536M'
    assert format_size(1000) == '1000B'


@pytest.mark.parametrize('name', ['node01', 'a', 'node-01.data_2', 'X' * 63])
def test_names_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize('name', ['', '../x', 'a/b', '.hidden', '-x', 'a..b', 'X' * 64, 'sp ace', None, 'é', 'node01\n', 'node01\x00'])
def test_names_rejected(name):
    with pytest.raises(ValidationError):
        check_name(name)


@pytest.mark.parametrize('iqn', [
    'iqn.2026-11.io.clusterducks:node01', 'iqn.2003-01.org.linux-iscsi.host.x8664:sn.abc',
    'iqn.2026-11.io.clusterducks', 'eui.0123456789abcdef', 'naa.5001405abcdef012',
])
def test_iqn_accepted(iqn):
    assert check_iqn(iqn) == iqn


@pytest.mark.parametrize('iqn', [
    'IQN.2026-11.io.x:a', 'iqn.2026-13.io.x:a', 'iqn.26-11.io.x', 'iqn.2026-11.-bad.x', 'node01',
    'iqn.2026-11.io.x:' + 'a' * 220, 'eui.0123', 'iqn.2026-11.io.x:has space', 'iqn.2026-11.io.x:a\n',
    'eui.0123456789ABCDEF', 'iqn.2026-11.io.x:Node01', 'iqn.2026-11.io.x:a_b', 'iqn.2026-11.localhost:x',
    'naa.6001405abcdef0123456789abcdef012', 'naa.6001405abcdef012',
])
def test_iqn_rejected(iqn):
    with pytest.raises(ValidationError):
        check_iqn(iqn)


@pytest.mark.parametrize('secret', ['short', 'has a space in', 'quote"inside1234', "quote'inside1234",
                                    'back\\slash12345', 'x' * 256, 'tab\tinside12345', 'ünïcödé-secret'])
def test_chap_secret_rejected_without_echoing_it(secret):
    with pytest.raises(ValidationError) as err:
        check_chap('user', secret, 'initiator x chap')
    assert secret not in str(err.value)


def test_chap_accepted():
    check_chap('node01', 'abcdefghijkl', 'x')
    check_chap('node01@site', '!#$%&()*+,-./:;<=>?@[]^_`{|}~', 'x')


def test_resource_items_single_and_many():
    from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import resource_items
    keys = ('name', 'size')
    assert resource_items({'name': 'a', 'size': '1G', 'many': None}, 'name', 'many', keys) == [{'name': 'a', 'size': '1G'}]
    assert resource_items({'name': None, 'many': [{'name': 'b'}]}, 'name', 'many', keys) == [{'name': 'b'}]
    with pytest.raises(ValidationError, match='many item 2: unknown keys colour'):
        resource_items({'name': None, 'many': [{'name': 'b'}, {'colour': 1}]}, 'name', 'many', keys)
    with pytest.raises(ValidationError, match='many item 1 is not a dictionary'):
        resource_items({'name': None, 'many': ['b']}, 'name', 'many', keys)
