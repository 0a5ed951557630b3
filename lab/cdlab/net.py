"""The lab's networks: the private storage network's addresses and the
127.0.0.1 ports that qemu forwards to the guests."""

import socket

STORAGE_NET = "10.77.0"  # /24, private to the lab's multicast hub
STORAGE_MCAST_GROUP = "230.77.0.1"
FIRST_HOST = 11  # VM n gets STORAGE_NET.(FIRST_HOST + n)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port, kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
