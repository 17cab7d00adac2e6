"""Keep NNI's web UI and REST API on this machine: bind its Node.js manager to 127.0.0.1.

NNI 3.0's manager (``nni_node``) calls ``app.listen(port)`` with no host, so it listens on every
network interface with no login: anyone who reaches the port reads the experiment (paths, the
trial command) and can control it. NNI has no setting for the address. :func:`loopback_environment`
preloads a few lines of JavaScript into the manager (``NODE_OPTIONS=--require``) that make every
TCP ``listen`` of the process bind to 127.0.0.1; no NNI file is changed. :func:`listening_addresses`
reads the kernel's socket table, so the result is checked, not assumed.
"""

from __future__ import annotations

import ipaddress
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vs_plugin.io import atomic_write_text

LOOPBACK = "127.0.0.1"
PRELOAD_NAME = "vs-plugin-loopback.js"

#: The preloaded script (written for vs-plugin).
PRELOAD_JS = """// Preloaded into NNI's Node.js manager by `vs-plugin tune` (NODE_OPTIONS=--require <this file>).
// NNI 3.0's REST server calls app.listen(port) with no host, so Node listens on every network
// interface. This wraps net.Server.prototype.listen (http.Server inherits it) so that every TCP
// listen of the process binds to VS_PLUGIN_NNI_HOST (127.0.0.1 unless set). Unix sockets and
// inherited handles are left alone. Written for vs-plugin; it changes no NNI file on disk.
'use strict';
const net = require('net');

const host = process.env.VS_PLUGIN_NNI_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

function isPort(value) {
    return typeof value === 'number' || (typeof value === 'string' && /^\\d+$/.test(value));
}

net.Server.prototype.listen = function (...args) {
    const first = args[0];
    if (first === undefined || typeof first === 'function') {
        args.unshift(0, host);  // listen() / listen(callback): a random port
    } else if (isPort(first)) {
        if (typeof args[1] === 'string') {
            args[1] = host;  // listen(port, '0.0.0.0', ...)
        } else {
            args.splice(1, 0, host);  // listen(port), listen(port, callback), listen(port, backlog, ...)
        }
    } else if (first !== null && typeof first === 'object' && first.path === undefined
               && first.fd === undefined && first.handle === undefined && first._handle === undefined) {
        args[0] = Object.assign({}, first, { host });  // listen({port, ...})
    }
    return listen.apply(this, args);
};
"""


@contextmanager
def loopback_environment(folder: Path, host: str = LOOPBACK) -> Iterator[Path]:
    """While active, Node.js processes started from here bind their TCP servers to ``host``.

    Writes the preload script into ``folder`` and sets ``NODE_OPTIONS`` and ``VS_PLUGIN_NNI_HOST``
    in this process's environment (NNI starts its manager with the inherited environment);
    both are restored on exit.
    """
    folder = Path(folder)
    script = atomic_write_text(folder / PRELOAD_NAME, PRELOAD_JS)  # another tune may be starting beside us
    saved = {name: os.environ.get(name) for name in ("NODE_OPTIONS", "VS_PLUGIN_NNI_HOST")}
    quoted = '"' + str(script.resolve()).replace('\\', '\\\\').replace('"', '\\"') + '"'
    os.environ["NODE_OPTIONS"] = " ".join(filter(None, [saved["NODE_OPTIONS"], f"--require {quoted}"]))
    os.environ["VS_PLUGIN_NNI_HOST"] = host
    try:
        yield script
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _decode(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 stores the address as four host-order (little-endian) 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def listening_addresses(port: int) -> list[str]:
    """Addresses on which a TCP socket of this machine listens on ``port`` (Linux; [] elsewhere)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port:
                found.append(_decode(address))
    return sorted(set(found))


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


__all__ = ["LOOPBACK", "loopback_environment", "listening_addresses", "is_loopback"]
