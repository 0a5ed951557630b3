# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A writable in-memory model of rtslib-fb 2.1.75 (Debian 12) and the configfs tree under it.

Unlike ``fake_rtslib`` (a read-only snapshot), this follows rtslib's own
create/lookup rules, read from rtslib/target.py, tcm.py, node.py, fabric.py and
root.py at tag v2.1.75:

- ``mode='create'`` raises RTSLibError if the object exists, ``'lookup'``
  raises RTSLibNotInCFS if it does not, ``'any'`` does either.
- ``LUN(tpg, n, storage_object)`` creates (an existing LUN n is an error),
  ``LUN(tpg, n)`` looks up; ``MappedLUN(acl, m, tpg_lun, write_protect)``
  creates (an existing mapped LUN m is an error), ``MappedLUN(acl, m)`` looks
  up; ``FileIOStorageObject(name, dev, size, ...)`` creates,
  ``FileIOStorageObject(name)`` looks up.
- Objects are handles on a configfs path: a handle whose object was deleted
  raises RTSLibNotInCFS when used.
- ``delete()`` cascades the way rtslib does it (one configfs change at a time):
  a storage object deletes its LUNs, a LUN the mapped LUNs pointing at it, an
  ACL its mapped LUNs, a TPG its ACLs, LUNs and portals, a target its TPGs.
- IQNs are lower-cased and checked like ``utils.normalize_wwn``; an IPv6 portal
  needs brackets (``[fd00::1]``) as the kernel parses ``ip:port``.

Every configfs write (mkdir, rmdir, attribute or auth write) goes through
``Model._mutate``, where a test can inject an RTSLibError (``fail_at``,
``fail_from``, ``fail_on``). The model is not the kernel: attribute ranges are
checked only for 0/1 flags, and kernel-side links between attributes and
parameters (e.g. authentication and AuthMethod) are not modelled.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import types

DEBIAN_DBROOT = '/etc/rtslib-fb-target'
DEBIAN_SAVE_FILE = DEBIAN_DBROOT + '/saveconfig.json'
CONFIGFS = '/sys/kernel/config/target'


class RTSLibError(Exception):
    pass


class RTSLibNotInCFS(RTSLibError):
    pass


class RTSLibBrokenLink(RTSLibError):
    pass


class InjectedFailure(RTSLibError):
    """What an injected failure raises (an RTSLibError, as rtslib would)."""


# Linux 6.1 iSCSI TPG defaults (drivers/target/iscsi/iscsi_target_tpg.c, iscsi_target_parameters.h).
TPG_ATTRIBUTES = {
    'authentication': '1', 'cache_dynamic_acls': '0', 'default_cmdsn_depth': '64', 'default_erl': '0',
    'demo_mode_discovery': '1', 'demo_mode_write_protect': '1', 'fabric_prot_type': '0',
    'generate_node_acls': '0', 'login_keys_workaround': '1', 'login_timeout': '15', 'netif_timeout': '2',
    'prod_mode_write_protect': '0', 't10_pi': '0', 'tpg_enabled_sendtargets': '1',
}
TPG_FLAGS = frozenset((
    'authentication', 'cache_dynamic_acls', 'demo_mode_discovery', 'demo_mode_write_protect',
    'generate_node_acls', 'login_keys_workaround', 'prod_mode_write_protect', 't10_pi', 'tpg_enabled_sendtargets',
))
TPG_PARAMETERS = {
    'AuthMethod': 'CHAP,None', 'DataDigest': 'CRC32C,None', 'DataPDUInOrder': 'Yes', 'DataSequenceInOrder': 'Yes',
    'DefaultTime2Retain': '20', 'DefaultTime2Wait': '2', 'ErrorRecoveryLevel': '0', 'FirstBurstLength': '65536',
    'HeaderDigest': 'CRC32C,None', 'IFMarkInt': '2048~65535', 'IFMarker': 'No', 'ImmediateData': 'Yes',
    'InitialR2T': 'Yes', 'MaxBurstLength': '262144', 'MaxConnections': '1', 'MaxOutstandingR2T': '1',
    'MaxRecvDataSegmentLength': '8192', 'MaxXmitDataSegmentLength': '262144', 'OFMarkInt': '2048~65535',
    'OFMarker': 'No', 'TargetAlias': 'LIO Target',
}
ACL_ATTRIBUTES = {
    'dataout_timeout': '3', 'dataout_timeout_retries': '5', 'default_erl': '0', 'nopin_response_timeout': '30',
    'nopin_timeout': '15', 'random_datain_pdu_offsets': '0', 'random_datain_seq_offsets': '0',
    'random_r2t_offsets': '0',
}
SO_ATTRIBUTES = {
    'block_size': '512', 'emulate_3pc': '1', 'emulate_tpu': '0', 'emulate_tpws': '0', 'emulate_write_cache': '0',
    'hw_max_sectors': '16384', 'max_write_same_len': '4096', 'queue_depth': '128',
}
AUTH_KEYS = ('userid', 'password', 'userid_mutual', 'password_mutual')
# name -> (wwn types, features), from fabric.py
FABRICS = {
    'iscsi': (('iqn', 'naa', 'eui'), ('discovery_auth', 'acls', 'auth', 'nps', 'tpgts')),
    'loopback': (('naa',), ('nexus',)),
}


def _cleanse_wwn(wwn_type, wwn):
    wwn = str(wwn.strip()).lower()
    if wwn_type in ('naa', 'eui'):
        if wwn.startswith('0x'):
            wwn = wwn[2:]
        wwn = wwn.replace('-', '').replace(':', '')
        if not (wwn.startswith('naa.') or wwn.startswith('eui.')):
            wwn = wwn_type + '.' + wwn
    return wwn


_WWN_TESTS = {
    'iqn': lambda w: re.match(r'iqn\.[0-9]{4}-[0-1][0-9]\..*\..*', w) and ' ' not in w and '_' not in w,
    'naa': lambda w: re.match(r'naa\.[125][0-9a-fA-F]{15}$', w),
    'eui': lambda w: re.match(r'eui\.[0-9a-f]{16}$', w),
}


def normalize_wwn(wwn_types, wwn):
    """utils.normalize_wwn: (normalized wwn, type) or RTSLibError."""
    for wwn_type in wwn_types:
        clean = _cleanse_wwn(wwn_type, wwn)
        if _WWN_TESTS[wwn_type](clean):
            return clean, wwn_type
    raise RTSLibError('WWN not valid as: %s' % ', '.join(wwn_types))


def _int_or_str(value):
    try:
        return int(value)
    except ValueError:
        return value


# ---------------------------------------------------------------- handles

class _Node(object):
    """A handle on one configfs directory, like rtslib's CFSNode."""

    kind = 'CFSNode'

    def __eq__(self, other):
        return isinstance(other, _Node) and self.path == other.path

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.path)

    def __repr__(self):
        return '<model %s %s>' % (self.kind, self.path)

    def _container(self):
        """The dict that holds this node's state under ``self._name``, or None if the parent is gone."""
        raise NotImplementedError

    def _node(self):
        container = self._container()
        return None if container is None else container.get(self._name)

    @property
    def exists(self):
        return self._node() is not None

    def _check_self(self):
        if not self.exists:
            raise RTSLibNotInCFS('This %s does not exist in configFS' % self.kind)

    def _create_in_cfs_ine(self, mode, make):
        if mode not in ('any', 'lookup', 'create'):
            raise RTSLibError('Invalid mode: %s' % mode)
        if self.exists:
            if mode == 'create':
                raise RTSLibError('This %s already exists in configFS' % self.kind)
            return
        if mode == 'lookup':
            raise RTSLibNotInCFS('No such %s in configfs: %s' % (self.kind, self.path))
        self._mkdir(make)

    def _mkdir(self, make):
        container = self._container()
        if container is None:
            raise RTSLibError('Could not create %s in configFS' % self.kind)
        self._m._mutate('mkdir %s' % self.path)
        container[self._name] = make()

    def _rmdir(self):
        if self.exists:
            self._m._mutate('rmdir %s' % self.path)
            del self._container()[self._name]

    def delete(self):
        self._rmdir()

    # attrib/ and param/ as CFSNode has them
    def _values(self, what):
        self._check_self()
        return self._node().get(what, {})

    def list_attributes(self, writable=None, readable=None):
        return sorted(self._values('attributes'))

    def list_parameters(self, writable=None, readable=None):
        return sorted(self._values('parameters'))

    def get_attribute(self, attribute):
        values = self._values('attributes')
        if attribute not in values:
            raise RTSLibError('Cannot find attribute: %s' % attribute)
        return values[attribute]

    def set_attribute(self, attribute, value):
        values = self._values('attributes')
        if attribute not in values:
            raise RTSLibError('Cannot find attribute: %s' % attribute)
        value = self._check_attribute(attribute, str(value).strip())
        self._m._mutate('write %s/attrib/%s' % (self.path, attribute))
        values[attribute] = value

    def _check_attribute(self, attribute, value):
        # The kernel parses attributes as unsigned integers (kstrtou32).
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0 or (attribute in self._flags and number > 1):
            raise RTSLibError('Cannot set attribute %s: [Errno 22] Invalid argument' % attribute)
        return str(number)

    _flags = frozenset()

    def get_parameter(self, parameter):
        values = self._values('parameters')
        if parameter not in values:
            raise RTSLibError('Cannot find RFC-3720 parameter: %s' % parameter)
        return values[parameter]

    def set_parameter(self, parameter, value):
        values = self._values('parameters')
        if parameter not in values:
            raise RTSLibError('Cannot find parameter: %s' % parameter)
        self._m._mutate('write %s/param/%s' % (self.path, parameter))
        values[parameter] = str(value).strip()

    def _dump_values(self):
        d = {}
        attributes = {k: _int_or_str(v) for k, v in self._values('attributes').items()}
        if attributes:
            d['attributes'] = attributes
        parameters = dict(self._values('parameters'))
        if parameters:
            d['parameters'] = parameters
        return d


def _auth_property(key, ignore=False):
    """chap_* / discovery_*: "NULL" unsets (utils._get_auth_attr / _set_auth_attr)."""

    def get(self):
        self._check_self()
        node = self._auth_node()
        if node is None:
            if ignore:
                return None
            raise RTSLibError('no auth/%s' % key)
        return node[key]

    def set(self, value):
        self._check_self()
        value = value.strip()
        if value == 'NULL':
            raise RTSLibError("'NULL' is not a permitted value")
        if len(value) > 255:
            raise RTSLibError('Value longer than maximum length of 255')
        self._m._mutate('write %s/auth/%s' % (self.path, key))
        self._auth_node()[key] = value

    return property(get, set)


def _new_auth():
    return {k: '' for k in AUTH_KEYS}


class FabricModule(_Node):
    kind = 'FabricModule'

    def __init__(self, model, name):
        if name not in FABRICS:
            raise KeyError(name)  # rtslib: fabric_modules[name]
        self._m = model
        self.name = name
        self._name = name
        self.wwn_types, self.features = FABRICS[name]
        self.path = '%s/%s' % (CONFIGFS, name)

    def _container(self):
        return self._m.state['fabrics']

    def _node(self):
        node = self._container()[self.name]
        return node if node['loaded'] else None

    def _check_self(self):
        # rtslib loads the fabric's kernel module on first use.
        node = self._container()[self.name]
        if not node['loaded']:
            self._m.modprobed.append(self.name)
            node['loaded'] = True

    def has_feature(self, feature):
        return feature in self.features

    @property
    def targets(self):
        if self.exists:
            for wwn in list(self._node()['targets']):
                yield self._m.rtslib.Target(self, wwn, 'lookup')

    def _auth_node(self):
        return self._node()['discovery']

    def _get_enable(self):
        self._check_self()
        return self._node()['discovery']['enforce'] == '1'

    def _set_enable(self, enable):
        self._check_self()
        self._m._mutate('write %s/discovery_auth/enforce_discovery_auth' % self.path)
        self._node()['discovery']['enforce'] = '1' if int(enable) else '0'

    discovery_enable_auth = property(_get_enable, _set_enable)
    discovery_userid = _auth_property('userid')
    discovery_password = _auth_property('password')
    discovery_mutual_userid = _auth_property('userid_mutual')
    discovery_mutual_password = _auth_property('password_mutual')

    def dump(self):
        d = {'name': self.name}
        if self.has_feature('discovery_auth'):
            for attr, key in (('userid', 'userid'), ('password', 'password'),
                              ('mutual_userid', 'userid_mutual'), ('mutual_password', 'password_mutual')):
                value = self._node()['discovery'][key]
                if value:
                    d['discovery_' + attr] = value
            d['discovery_enable_auth'] = self.discovery_enable_auth
        return d


class Target(_Node):
    kind = 'Target'

    def __init__(self, fabric_module, wwn=None, mode='any'):
        self._m = fabric_module._m
        self.fabric_module = fabric_module
        fabric_module._check_self()
        if wwn is None:
            wwn = 'iqn.2003-01.org.linux-iscsi.model:sn.%012x' % self._m._next()
        self.wwn, self.wwn_type = normalize_wwn(fabric_module.wwn_types, wwn)
        self._name = self.wwn
        self.path = '%s/%s' % (fabric_module.path, self.wwn)
        self._create_in_cfs_ine(mode, lambda: {'tpgs': {}})

    def _container(self):
        fabric = self.fabric_module._node()
        return None if fabric is None else fabric['targets']

    def has_feature(self, feature):
        return self.fabric_module.has_feature(feature)

    @property
    def tpgs(self):
        self._check_self()
        for tag in list(self._node()['tpgs']):
            yield TPG(self, tag, 'lookup')

    def delete(self):
        self._check_self()
        for tpg in self.tpgs:
            tpg.delete()
        self._rmdir()

    def _values(self, what):
        self._check_self()
        return {}

    def dump(self):
        return {'wwn': self.wwn, 'fabric': self.fabric_module.name, 'tpgs': [tpg.dump() for tpg in self.tpgs]}


class TPG(_Node):
    kind = 'TPG'
    _flags = TPG_FLAGS

    def __init__(self, parent_target, tag=None, mode='any'):
        if not isinstance(parent_target, Target):
            raise RTSLibError('Invalid parent Target')
        self._m = parent_target._m
        self.parent_target = parent_target
        if tag is None:
            tags = [t.tag for t in parent_target.tpgs]
            tag = next(n for n in range(1, 1048576) if n not in tags)
        tag = int(tag)
        if tag < 0:
            raise RTSLibError('The TPG Tag must be >=0')
        self.tag = tag
        self._name = tag
        self.path = '%s/tpgt_%d' % (parent_target.path, tag)
        self._create_in_cfs_ine(mode, lambda: {
            'enable': False, 'portals': {}, 'luns': {}, 'acls': {}, 'auth': _new_auth(),
            'attributes': dict(TPG_ATTRIBUTES), 'parameters': dict(TPG_PARAMETERS)})

    def _container(self):
        target = self.parent_target._node()
        return None if target is None else target['tpgs']

    def has_feature(self, feature):
        return self.parent_target.has_feature(feature)

    def _get_enable(self):
        self._check_self()
        return self._node()['enable']

    def _set_enable(self, boolean):
        self._check_self()
        if bool(boolean) != self._get_enable():
            self._m._mutate('write %s/enable' % self.path)
            self._node()['enable'] = bool(boolean)

    enable = property(_get_enable, _set_enable)

    @property
    def network_portals(self):
        self._check_self()
        for name in list(self._node()['portals']):
            ip, port = name.rsplit(':', 1)
            yield NetworkPortal(self, ip, int(port), 'lookup')

    @property
    def luns(self):
        self._check_self()
        for lun in list(self._node()['luns']):
            yield LUN(self, lun)

    @property
    def node_acls(self):
        self._check_self()
        for wwn in list(self._node()['acls']):
            yield NodeACL(self, wwn, 'lookup')

    def node_acl(self, node_wwn, mode='any'):
        self._check_self()
        return NodeACL(self, node_wwn, mode)

    def network_portal(self, ip_address, port, mode='any'):
        self._check_self()
        return NetworkPortal(self, ip_address, port, mode)

    def lun(self, lun, storage_object=None, alias=None):
        self._check_self()
        return LUN(self, lun, storage_object, alias)

    def _auth_node(self):
        return self._node()['auth']

    chap_userid = _auth_property('userid', ignore=True)
    chap_password = _auth_property('password', ignore=True)
    chap_mutual_userid = _auth_property('userid_mutual', ignore=True)
    chap_mutual_password = _auth_property('password_mutual', ignore=True)

    def delete(self):
        self._check_self()
        self.enable = False
        for acl in self.node_acls:
            acl.delete()
        for lun in self.luns:
            lun.delete()
        for portal in self.network_portals:
            portal.delete()
        self._rmdir()

    def dump(self):
        d = self._dump_values()
        d.update(tag=self.tag, enable=self.enable, luns=[lun.dump() for lun in self.luns],
                 portals=[p.dump() for p in self.network_portals], node_acls=[a.dump() for a in self.node_acls])
        for attr, key in (('userid', 'userid'), ('password', 'password'),
                          ('mutual_userid', 'userid_mutual'), ('mutual_password', 'password_mutual')):
            if self._node()['auth'][key]:
                d['chap_' + attr] = self._node()['auth'][key]
        return d


def _portal_address_ok(ip_address):
    """The kernel parses "ip:port"; an IPv6 address needs brackets."""
    try:
        if ip_address.startswith('[') and ip_address.endswith(']'):
            ipaddress.IPv6Address(ip_address[1:-1])
        else:
            ipaddress.IPv4Address(ip_address)
    except ValueError:
        return False
    return True


class NetworkPortal(_Node):
    kind = 'NetworkPortal'

    def __init__(self, parent_tpg, ip_address, port=3260, mode='any'):
        self.ip_address = str(ip_address)
        try:
            self.port = int(port)
        except ValueError:
            raise RTSLibError('Invalid port')
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self._m = parent_tpg._m
        self.parent_tpg = parent_tpg
        self._name = '%s:%d' % (self.ip_address, self.port)
        self.path = '%s/np/%s' % (parent_tpg.path, self._name)
        if mode != 'lookup' and not self.exists and not _portal_address_ok(self.ip_address):
            raise RTSLibError('Could not create NetworkPortal in configFS')
        self._create_in_cfs_ine(mode, lambda: {'iser': False, 'offload': False})

    def _container(self):
        tpg = self.parent_tpg._node()
        return None if tpg is None else tpg['portals']

    @property
    def iser(self):
        return self._node()['iser']

    @property
    def offload(self):
        return self._node()['offload']

    def delete(self):
        self._rmdir()

    def dump(self):
        return {'port': self.port, 'ip_address': self.ip_address, 'iser': self.iser, 'offload': self.offload}


class LUN(_Node):
    kind = 'LUN'
    MAX_TARGET_LUN = 65535

    def __init__(self, parent_tpg, lun=None, storage_object=None, alias=None):
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self._m = parent_tpg._m
        self.parent_tpg = parent_tpg
        if lun is None:
            used = [x.lun for x in parent_tpg.luns]
            lun = next((n for n in range(self.MAX_TARGET_LUN + 1) if n not in used), None)
            if lun is None:
                raise RTSLibError('All LUNs 0-%d in use' % self.MAX_TARGET_LUN)
        lun = int(lun)
        if not 0 <= lun <= self.MAX_TARGET_LUN:
            raise RTSLibError('LUN must be 0 to %d' % self.MAX_TARGET_LUN)
        self.lun = lun
        self._name = lun
        self.path = '%s/lun/lun_%d' % (parent_tpg.path, lun)
        if storage_object is None and alias is not None:
            raise RTSLibError('The alias parameter has no meaning without the storage_object parameter')
        if storage_object is None:
            self._create_in_cfs_ine('lookup', None)
            return
        if self.exists:
            raise RTSLibError('This LUN already exists in configFS')
        # rtslib makes the directory, then links the storage object (and removes the directory if that fails).
        if not storage_object.exists:
            raise RTSLibError('storage_object does not exist in configFS')
        key = (storage_object.plugin, storage_object.name)
        self._mkdir(lambda: {'so': key, 'alias': alias or self._m._alias()})

    def _container(self):
        tpg = self.parent_tpg._node()
        return None if tpg is None else tpg['luns']

    @property
    def alias(self):
        self._check_self()
        return self._node()['alias']

    @property
    def storage_object(self):
        self._check_self()
        return self._m._so_handle(*self._node()['so'])

    @property
    def mapped_luns(self):
        self._check_self()
        for acl in self.parent_tpg.node_acls:
            for mlun in acl.mapped_luns:
                if mlun._node()['tpg_lun'] == self.lun:
                    yield mlun

    @property
    def alua_tg_pt_gp_name(self):
        return 'default_tg_pt_gp'

    def delete(self):
        self._check_self()
        for mlun in self.mapped_luns:
            mlun.delete()
        self._rmdir()

    def dump(self):
        so = self.storage_object
        return {'storage_object': '/backstores/%s/%s' % (so.plugin, so.name), 'index': self.lun,
                'alias': self.alias, 'alua_tg_pt_gp_name': self.alua_tg_pt_gp_name}


class NodeACL(_Node):
    kind = 'NodeACL'

    def __init__(self, parent_tpg, node_wwn, mode='any'):
        if not isinstance(parent_tpg, TPG):
            raise RTSLibError('Invalid parent TPG')
        self._m = parent_tpg._m
        self.parent_tpg = parent_tpg
        fabric = parent_tpg.parent_target.fabric_module
        self.node_wwn, self.wwn_type = normalize_wwn(fabric.wwn_types, node_wwn)
        self._name = self.node_wwn
        self.path = '%s/acls/%s' % (parent_tpg.path, self.node_wwn)
        self._create_in_cfs_ine(mode, lambda: {'mapped': {}, 'auth': _new_auth(), 'tag': None,
                                               'attributes': dict(ACL_ATTRIBUTES)})

    def _container(self):
        tpg = self.parent_tpg._node()
        return None if tpg is None else tpg['acls']

    def has_feature(self, feature):
        return self.parent_tpg.has_feature(feature)

    @property
    def mapped_luns(self):
        self._check_self()
        for mapped_lun in list(self._node()['mapped']):
            yield MappedLUN(self, mapped_lun)

    def mapped_lun(self, mapped_lun, tpg_lun=None, write_protect=None):
        self._check_self()
        return MappedLUN(self, mapped_lun, tpg_lun, write_protect)

    @property
    def session(self):
        """A logged-in initiator's session (model.log_in), as rtslib parses configfs' info file."""
        if (self.parent_tpg.parent_target.wwn, self.node_wwn) in self._m.sessions:
            return {'state': 'LOGGED_IN', 'connections': [], 'parent_nodeacl': self}
        return None

    def _get_tag(self):
        self._check_self()
        return self._node()['tag']

    def _set_tag(self, tag):
        self._m._mutate('write %s/tag' % self.path)
        self._node()['tag'] = tag

    tag = property(_get_tag, _set_tag)

    def _auth_node(self):
        return self._node()['auth']

    chap_userid = _auth_property('userid')
    chap_password = _auth_property('password')
    chap_mutual_userid = _auth_property('userid_mutual')
    chap_mutual_password = _auth_property('password_mutual')

    def delete(self):
        self._check_self()
        for mlun in self.mapped_luns:
            mlun.delete()
        self._rmdir()

    def dump(self):
        d = self._dump_values()
        d.update(node_wwn=self.node_wwn, mapped_luns=[m.dump() for m in self.mapped_luns])
        if self.tag:
            d['tag'] = self.tag
        for attr, key in (('userid', 'userid'), ('password', 'password'),
                          ('mutual_userid', 'userid_mutual'), ('mutual_password', 'password_mutual')):
            if self._node()['auth'][key]:
                d['chap_' + attr] = self._node()['auth'][key]
        return d


class MappedLUN(_Node):
    kind = 'MappedLUN'
    MAX_LUN = 255

    def __init__(self, parent_nodeacl, mapped_lun, tpg_lun=None, write_protect=None, alias=None):
        if not isinstance(parent_nodeacl, NodeACL):
            raise RTSLibError('The parent_nodeacl parameter must be a NodeACL object')
        if not parent_nodeacl.exists:
            raise RTSLibError('The parent_nodeacl does not exist')
        self._m = parent_nodeacl._m
        self.parent_nodeacl = parent_nodeacl
        try:
            self.mapped_lun = int(mapped_lun)
        except ValueError:
            raise RTSLibError('The mapped_lun parameter must be an integer value')
        if not 0 <= self.mapped_lun <= self.MAX_LUN:
            raise RTSLibError('Mapped LUN must be 0 to %d' % self.MAX_LUN)
        self._name = self.mapped_lun
        self.path = '%s/lun_%d' % (parent_nodeacl.path, self.mapped_lun)
        if tpg_lun is None and write_protect is not None:
            raise RTSLibError('The write_protect parameter has no meaning without the tpg_lun parameter')
        if tpg_lun is None:
            self._create_in_cfs_ine('lookup', None)
            return
        if self.exists:
            raise RTSLibError('This MappedLUN already exists in configFS')
        if isinstance(tpg_lun, LUN):
            tpg_lun = tpg_lun.lun
        else:
            try:
                tpg_lun = int(tpg_lun)
            except ValueError:
                raise RTSLibError('The tpg_lun must be either an integer or a LUN object')
        if tpg_lun not in [x.lun for x in parent_nodeacl.parent_tpg.luns]:
            # rtslib made the directory first and removes it again
            raise RTSLibError('LUN %s does not exist in this TPG' % tpg_lun)
        try:
            protect = int(write_protect) > 0
        except (TypeError, ValueError):
            protect = False
        self._mkdir(lambda: {'tpg_lun': tpg_lun, 'write_protect': protect, 'alias': alias or self._m._alias()})

    def _container(self):
        acl = self.parent_nodeacl._node()
        return None if acl is None else acl['mapped']

    @property
    def alias(self):
        self._check_self()
        return self._node()['alias']

    def _get_write_protect(self):
        self._check_self()
        return self._node()['write_protect']

    def _set_write_protect(self, write_protect):
        self._check_self()
        self._m._mutate('write %s/write_protect' % self.path)
        self._node()['write_protect'] = bool(write_protect)

    write_protect = property(_get_write_protect, _set_write_protect)

    @property
    def tpg_lun(self):
        self._check_self()
        n = self._node()['tpg_lun']
        try:
            return LUN(self.parent_nodeacl.parent_tpg, n)
        except RTSLibNotInCFS:
            raise RTSLibBrokenLink('Broken MappedLUN, no TPG LUN found')

    @property
    def node_wwn(self):
        return self.parent_nodeacl.node_wwn

    def delete(self):
        self._check_self()
        self._rmdir()

    def dump(self):
        return {'write_protect': self.write_protect, 'index': self.mapped_lun, 'tpg_lun': self.tpg_lun.lun,
                'alias': self.alias}


class StorageObject(_Node):
    """Any backstore object; FileIOStorageObject adds the fileio constructor and properties."""

    kind = 'StorageObject'
    plugin = None

    def _init_handle(self, model, name, plugin):
        if '/' in name or ' ' in name or '\t' in name or '\n' in name:
            raise RTSLibError("A storage object's name cannot contain  /, newline or spaces/tabs")
        self._m = model
        self.name = name
        self.plugin = plugin
        self._name = (plugin, name)
        self.path = '%s/core/%s_0/%s' % (CONFIGFS, plugin, name)

    def _container(self):
        return self._m.state['sos']

    def __eq__(self, other):
        return isinstance(other, StorageObject) and (self.plugin, self.name) == (other.plugin, other.name)

    def __hash__(self):
        return hash((self.plugin, self.name))

    def _prop(self, key):
        self._check_self()
        return self._node()[key]

    udev_path = property(lambda self: self._prop('dev'))
    size = property(lambda self: self._prop('size'))

    def _get_wwn(self):
        return self._prop('wwn')

    def _set_wwn(self, wwn):
        self._check_self()
        self._m._mutate('write %s/wwn/vpd_unit_serial' % self.path)
        self._node()['wwn'] = wwn

    wwn = property(_get_wwn, _set_wwn)

    @property
    def status(self):
        self._check_self()
        return 'activated' if any(True for _lun in self.attached_luns) else 'deactivated'

    def is_configured(self):
        self._check_self()
        return True

    @property
    def attached_luns(self):
        self._check_self()
        for name in FABRICS:
            for target in FabricModule(self._m, name).targets:
                for tpg in target.tpgs:
                    for lun in tpg.luns:
                        if lun._node()['so'] == self._name:
                            yield lun

    @property
    def alua_tpgs(self):
        return iter(())

    def delete(self, save=False):
        self._check_self()
        for lun in list(self.attached_luns):
            if self.status != 'activated':
                break
            lun.delete()
        self._rmdir()

    def dump(self):
        d = self._dump_values()
        d.update(name=self.name, plugin=self.plugin, alua_tpgs=[])
        node = self._node()
        for key in ('wwn', 'size'):
            if node.get(key) is not None:
                d[key] = node[key]
        if node.get('dev'):
            d['dev'] = node['dev']
        return d


class FileIOStorageObject(StorageObject):
    kind = 'FileIOStorageObject'
    _m = None  # set on the model's subclass

    def __init__(self, name, dev=None, size=None, wwn=None, write_back=False, aio=False, index=None):
        self._init_handle(self._m, name, 'fileio')
        if dev is None:
            self._create_in_cfs_ine('lookup', None)
            return
        if self.exists:
            raise RTSLibError('This FileIOStorageObject already exists in configFS')
        if dev in self._m.block_devices:
            # rtslib ignores a size for a block device; LIO shows the size the device had then.
            if self._m.device_in_use(dev):
                raise RTSLibError('Device %s is already in use' % dev)
            size = self._m.block_devices[dev]
        elif size is None:
            raise RTSLibError('Path is to a file, size needed')
        attributes = dict(SO_ATTRIBUTES, emulate_write_cache='1' if write_back else '0')
        self._mkdir(lambda: {'dev': dev, 'size': int(size), 'wwn': wwn or self._m._uuid(),
                             'write_back': bool(write_back), 'aio': bool(aio), 'attributes': attributes})

    write_back = property(lambda self: self._prop('attributes')['emulate_write_cache'] == '1')
    aio = property(lambda self: self._prop('aio'))

    def dump(self):
        d = super(FileIOStorageObject, self).dump()
        d.update(write_back=self.write_back, aio=self.aio)
        return d


class BlockStorageObject(StorageObject):
    """A block backstore: its size is its device's (``model.block_devices``), read live."""

    kind = 'BlockStorageObject'
    _m = None  # set on the model's subclass

    def __init__(self, name, dev=None, wwn=None, readonly=False, write_back=False, index=None):
        self._init_handle(self._m, name, 'block')
        if dev is None:
            self._create_in_cfs_ine('lookup', None)
            return
        if self.exists:
            raise RTSLibError('Storage object block/%s exists' % name)
        if dev not in self._m.block_devices:
            raise RTSLibError('Device %s is not a TYPE_DISK block device' % dev)
        if self._m.device_in_use(dev):
            raise RTSLibError('Cannot configure StorageObject because device %s is already in use' % dev)
        # emulate_write_cache reads 0, yet the initiator sees the device's own
        # write cache (LIO asks the block device): measured, docs/data-path.md.
        attributes = dict(SO_ATTRIBUTES)
        self._mkdir(lambda: {'dev': dev, 'size': None, 'wwn': wwn or self._m._uuid(), 'readonly': bool(readonly),
                             'attributes': attributes})

    @property
    def size(self):
        self._check_self()
        return self._m.block_devices[self._node()['dev']]

    write_back = property(lambda self: self._prop('attributes')['emulate_write_cache'] == '1')
    readonly = property(lambda self: self._prop('readonly'))

    def dump(self):
        d = super(BlockStorageObject, self).dump()
        d.update(write_back=self.write_back, readonly=self.readonly)
        return d


class _OtherStorageObject(StorageObject):
    kind = 'StorageObject'

    def __init__(self, model, plugin, name):
        self._init_handle(model, name, plugin)
        self._create_in_cfs_ine('lookup', None)


class RTSRoot(_Node):
    kind = 'RTSRoot'
    _m = None  # set on the model's subclass
    _preferred_dbroot = DEBIAN_DBROOT  # Debian's patch (upstream: /etc/target)
    path = CONFIGFS

    def __init__(self):
        self._m.roots_opened += 1

    @property
    def exists(self):
        return True

    def _values(self, what):
        return {}

    @property
    def dbroot(self):
        return self._preferred_dbroot

    @property
    def fabric_modules(self):
        for name in FABRICS:
            yield FabricModule(self._m, name)

    @property
    def targets(self):
        for fabric in self.fabric_modules:
            yield from fabric.targets

    @property
    def tpgs(self):
        for target in self.targets:
            yield from target.tpgs

    @property
    def luns(self):
        for tpg in self.tpgs:
            yield from tpg.luns

    @property
    def node_acls(self):
        for tpg in self.tpgs:
            yield from tpg.node_acls

    @property
    def mapped_luns(self):
        for acl in self.node_acls:
            yield from acl.mapped_luns

    @property
    def network_portals(self):
        for tpg in self.tpgs:
            yield from tpg.network_portals

    @property
    def storage_objects(self):
        for plugin, name in list(self._m.state['sos']):
            yield self._m._so_handle(plugin, name)

    def dump(self):
        return {
            'storage_objects': [so.dump() for so in self.storage_objects],
            'targets': [t.dump() for t in self.targets],
            'fabric_modules': [f.dump() for f in self.fabric_modules
                               if f.exists and f.has_feature('discovery_auth') and f.discovery_enable_auth],
        }

    def save_to_file(self, save_file=None, so_path=None):
        with open(save_file or self._m.root_module.default_save_file, 'w') as f:
            f.write(json.dumps(self.dump(), sort_keys=True, indent=2) + '\n')

    def invalidate_caches(self):
        pass


# ---------------------------------------------------------------- the model

class Model(object):
    """One storage host's LIO. ``model.rtslib`` stands in for the ``rtslib_fb`` module,
    ``model.root_module`` for ``rtslib_fb.root``."""

    def __init__(self, dbroot=DEBIAN_DBROOT, save_file=DEBIAN_SAVE_FILE):
        self.state = {
            'fabrics': {name: {'loaded': False, 'targets': {},
                               'discovery': dict(_new_auth(), enforce='0')} for name in FABRICS},
            'sos': {},
        }
        self.mutations = 0
        self.log = []  # every configfs change, in order
        self.modprobed = []
        self.roots_opened = 0
        self._seq = 0
        self._fail = None
        model = self
        root_cls = type('RTSRoot', (RTSRoot,), {'_m': model, '_preferred_dbroot': dbroot})
        fileio_cls = type('FileIOStorageObject', (FileIOStorageObject,), {'_m': model})
        block_cls = type('BlockStorageObject', (BlockStorageObject,), {'_m': model})
        self.block_devices = {}  # path -> size in bytes: what a block backstore can be made on
        self.sessions = set()  # (target wwn, initiator wwn) logged in
        self.root_module = types.SimpleNamespace(default_save_file=save_file, RTSRoot=root_cls)
        self.rtslib = types.SimpleNamespace(
            __version__='2.1.75',
            RTSLibError=RTSLibError, RTSLibNotInCFS=RTSLibNotInCFS, RTSLibBrokenLink=RTSLibBrokenLink,
            RTSRoot=root_cls,
            FabricModule=lambda name: FabricModule(model, name),
            Target=Target, TPG=TPG, NetworkPortal=NetworkPortal, LUN=LUN, NodeACL=NodeACL, MappedLUN=MappedLUN,
            FileIOStorageObject=fileio_cls, BlockStorageObject=block_cls,
        )

    # ids ------------------------------------------------------------
    def _next(self):
        self._seq += 1
        return self._seq

    def _alias(self):
        return '%010x' % self._next()

    def _uuid(self):
        return '%08x-0000-4000-8000-%012x' % (self._next(), self._seq)

    def _so_handle(self, plugin, name):
        if plugin == 'fileio':
            return self.rtslib.FileIOStorageObject(name)
        if plugin == 'block' and 'readonly' in self.state['sos'][(plugin, name)]:
            return self.rtslib.BlockStorageObject(name)
        return _OtherStorageObject(self, plugin, name)

    # failure injection ---------------------------------------------
    def _mutate(self, op):
        self.mutations += 1
        if self._fail is not None and self._fail(self.mutations, op):
            raise InjectedFailure('injected failure at configfs change %d: %s' % (self.mutations, op))
        self.log.append(op)

    def fail_at(self, *nth):
        """The nth configfs changes from now on (1 = the next one) raise RTSLibError."""
        base = self.mutations
        self._fail = lambda n, op: n - base in nth

    def fail_from(self, nth):
        """The nth configfs change from now on and every one after it raise."""
        base = self.mutations
        self._fail = lambda n, op: n - base >= nth

    def fail_on(self, predicate):
        """Changes for which ``predicate(op)`` is true raise (op: e.g. 'mkdir <path>')."""
        self._fail = lambda n, op: predicate(op)

    def heal(self):
        self._fail = None

    # state ----------------------------------------------------------
    def snapshot(self):
        return copy.deepcopy(self.state)

    def restore(self, snapshot):
        self.state = copy.deepcopy(snapshot)

    def dump(self):
        return self.rtslib.RTSRoot().dump()

    def view(self):
        """dump() without the random aliases and in sorted order, for comparing states."""
        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items() if k != 'alias'}
            if isinstance(value, list):
                return sorted((clean(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
            return value
        return clean(self.dump())

    # seeding --------------------------------------------------------
    def device_in_use(self, dev):
        """Whether a backstore holds the block device open (LIO opens it exclusively)."""
        return any(node.get('dev') == dev for node in self.state['sos'].values())

    def add_vdisk(self, name, size=1 << 30, wwn=None):
        """A vDisk's fileio backstore as lio_backstore.create() makes it."""
        return self.rtslib.FileIOStorageObject(name, dev='/srv/vdisks/%s/disk.img' % name, size=size,
                                               wwn=wwn, write_back=False, aio=False)

    def add_storage_object(self, plugin, name, dev='', size=None):
        """A non-fileio backstore (block, rd_mcp, ...), only to be exported and looked at."""
        self._mutate('mkdir %s/core/%s_0/%s' % (CONFIGFS, plugin, name))
        self.state['sos'][(plugin, name)] = {'dev': dev, 'size': size, 'wwn': self._uuid(),
                                             'attributes': dict(SO_ATTRIBUTES)}
        return _OtherStorageObject(self, plugin, name)

    def iscsi_target(self, wwn, tag=1):
        """Create (or look up) an iSCSI target and its TPG; returns the TPG."""
        target = Target(FabricModule(self, 'iscsi'), wwn)
        return TPG(target, tag)
