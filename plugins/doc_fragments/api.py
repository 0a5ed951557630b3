# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # Connection options of the modules that talk to the storage API.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the storage API, for example C(https://storage1.example.com:8443).
      - If not set, the environment variable E(CLUSTERDUCKS_VDISK_API_URL) is used.
    type: str
    required: true
  token:
    description:
      - Admin token of the storage API (one line of its admin token file).
      - If not set, the environment variable E(CLUSTERDUCKS_VDISK_API_TOKEN) is used.
      - Never logged.
    type: str
    required: true
  validate_certs:
    description:
      - Whether to verify the API's TLS certificate.
      - Only set to V(false) on throw-away test setups.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate that signed the API's certificate
        (the C(clusterducks.vdisk.storage_api) role creates one unless you supply your own).
      - When not set, the system trust store is used.
    type: path
  timeout:
    description: Seconds to wait for each API request.
    type: float
    default: 10
requirements:
  - requests (Python library; C(python3-requests) on Debian) on the host that runs the module
notes:
  - These modules talk to the API over HTTPS from wherever they run; usually that is the controller
    (with C(delegate_to=localhost)) or the storage host itself.
  - The modules C(clusterducks.vdisk.assignment), C(clusterducks.vdisk.device_token) and
    C(clusterducks.vdisk.storage_api_info) form the action group C(clusterducks.vdisk.api). Set O(url),
    O(token), O(ca_path) and the other connection options once for all of them with the play or block keyword
    C(module_defaults) and the key C(group/clusterducks.vdisk.api) (an example is in C(docs/api.md) of the
    collection). A task's own options win over the defaults.
"""
