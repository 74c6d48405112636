"""What the side-by-side bench reads about a server from /proc (Linux only).

Read from outside the server so both servers are measured the same way, with no code of
ours inside them: CPU (utime + stime), RSS, and which of its TCP sockets are still open.
"""

from __future__ import annotations

import os
import resource

__all__ = ["cpu_s", "open_local_ports", "raise_nofile", "rss_kib"]

# /proc/net/tcp states: the server's side of a websocket the fake dropped is CLOSE_WAIT
# until the server closes it; once closed it is LAST_ACK or gone.
_OPEN_STATES = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one: 2,000 calls need 4,000+ sockets in
    the caller side, and children (the servers) inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_local_ports(remote_port: int, local_ports: set[int]) -> set[int]:
    """Which of ``local_ports`` still have an open (not yet closed by their owner) IPv4
    socket to ``remote_port`` on this machine.

    The fake knows each control websocket's client port, so this tells when the server
    under test has closed its side of every websocket, whatever its code does."""
    still: set[int] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            if state not in _OPEN_STATES or int(remote.rsplit(":", 1)[1], 16) != remote_port:
                continue
            port = int(local.rsplit(":", 1)[1], 16)
            if port in local_ports:
                still.add(port)
    return still
