"""Hosts on one machine for tests: Linux network namespaces, one per host, joined by bridges (issue 25).

A ``Topology`` makes a "switch" namespace holding one bridge per network and a namespace per host, each host
linked to the bridge of every network it is on by a veth pair (its end is ``eth-NETWORK``, the switch's end is
``HOST-NETWORK``). Addresses are private (``10.231.N.H/24``) and exist only inside those namespaces: nothing is
added to the root namespace's interfaces or routes. Every host knows every neighbour's MAC address up front
(permanent ARP entries), so a cut is silent from both sides: ``cut`` sets the switch's end of a host's link
down, the bridge drops what would cross it, and no ARP failure turns into "no route to host". A TCP connect
across a cut times out; one already open sees nothing until its own timeouts run out (as with a pulled cable or
a firewall that drops). ``heal`` sets the link up again.

Namespaces are named ``tkmh<pid>-<host>``; ``remove_stale`` deletes those of runs whose process is gone (a
crashed run), after killing whatever still runs in them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

PREFIX = "tkmh"
SUBNET = "10.231"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    """Runs ``ip [-n NAMESPACE] ARGS``; its output."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def kill_inside(namespace: str) -> None:
    """SIGKILL every process still running in ``namespace`` (ours: the namespace carries our prefix)."""
    for pid in ip("netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def remove_stale() -> list[str]:
    """Deletes the namespaces of earlier runs whose process is gone; the names removed."""
    removed = []
    for name in namespaces():
        if not (match := re.fullmatch(rf"{PREFIX}(\d+)-.+", name)):
            continue
        owner = int(match.group(1))
        if owner != os.getpid() and os.path.exists(f"/proc/{owner}"):
            continue  # another run, still going
        kill_inside(name)
        ip("netns", "delete", name, check=False)
        removed.append(name)
    return removed


@dataclass
class Host:
    """One machine: a namespace, and its address on each network it is on."""

    name: str
    namespace: str
    number: int
    addresses: dict[str, str] = field(default_factory=dict)  # network -> address

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host (``ip netns exec``, which execs: the PID is the command's own)."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, *args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, **kwargs)


class Topology:
    """Networks (a bridge each, in the switch namespace) and hosts linked to them; cut and heal a host's link."""

    def __init__(self, tag: str | None = None):
        self.tag = tag or f"{PREFIX}{os.getpid()}"
        self.switch = f"{self.tag}-switch"
        self.networks: dict[str, int] = {}  # name -> third octet
        self.hosts: dict[str, Host] = {}
        self.made: list[str] = []
        self._add_namespace(self.switch)

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.made.append(name)
        ip("link", "set", "lo", "up", namespace=name)

    def network(self, name: str, octet: int) -> None:
        """A network ``10.231.OCTET.0/24``: a bridge in the switch namespace."""
        self.networks[name] = octet
        ip("link", "add", "name", f"br-{name}", "type", "bridge", namespace=self.switch)
        ip("link", "set", f"br-{name}", "up", namespace=self.switch)

    def host(self, name: str, number: int, *networks: str) -> Host:
        """A host on ``networks``, with address ``10.231.OCTET.NUMBER`` on each."""
        host = Host(name, f"{self.tag}-{name}", number)
        self._add_namespace(host.namespace)
        for network in networks:
            port, inside = self.port(name, network), f"eth-{network}"
            ip("link", "add", "name", port, "type", "veth", "peer", "name", inside, "netns", host.namespace,
               namespace=self.switch)  # fmt: skip
            ip("link", "set", port, "master", f"br-{network}", "up", namespace=self.switch)
            address = f"{SUBNET}.{self.networks[network]}.{number}"
            ip("addr", "add", f"{address}/24", "dev", inside, namespace=host.namespace)
            ip("link", "set", inside, "up", namespace=host.namespace)
            host.addresses[network] = address
        self.hosts[name] = host
        return host

    def port(self, host: str, network: str) -> str:
        """The switch's end of ``host``'s link to ``network`` (at most 15 characters, as Linux requires)."""
        return f"{host}-{network}"[:15]

    def seal(self) -> None:
        """Every host learns every neighbour's MAC address for good, so a cut never surfaces as an ARP failure."""
        macs: dict[tuple[str, str], str] = {}
        for host in self.hosts.values():
            for network in host.addresses:
                shown = ip("-br", "link", "show", f"eth-{network}", namespace=host.namespace).split()
                macs[(host.name, network)] = shown[2]
        for host in self.hosts.values():
            for network in host.addresses:
                for other in self.hosts.values():
                    if other is not host and network in other.addresses:
                        ip("neigh", "replace", other.addresses[network], "lladdr", macs[(other.name, network)],
                           "dev", f"eth-{network}", "nud", "permanent", namespace=host.namespace)  # fmt: skip

    def cut(self, host: str, network: str) -> None:
        """``host`` loses ``network``: packets either way are dropped, with no reset and no error to either side."""
        ip("link", "set", self.port(host, network), "down", namespace=self.switch)

    def heal(self, host: str, network: str) -> None:
        ip("link", "set", self.port(host, network), "up", namespace=self.switch)

    def close(self) -> None:
        """Every process left in the hosts killed, every namespace deleted."""
        for name in reversed(self.made):
            kill_inside(name)
            ip("netns", "delete", name, check=False)
        self.made.clear()
