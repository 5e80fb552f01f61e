#!/usr/bin/env python3
"""The systemd twin of nixos/tests/ha.nix: database.ha under a real systemd.

Like nixos/twin/twin.py, but for the four nodes of the `vm-ha` VM test (`app`
with the services and HAProxy, `db1`..`db3` with etcd and Patroni): each node
is evaluated (nixos/eval/eval.nix), its units and /etc files rendered into an
overlay of the cached Debian trixie root (Debian's etcd, Patroni, HAProxy and
PostgreSQL 17 stand in for nixpkgs' builds at the store paths the units name),
and booted by systemd-nspawn on a veth attached to a host bridge, with the
address the NixOS test network gives that node (192.168.1.N in name order).
Then ha.nix's own testScript runs against the four containers through
nixos/twin/driver.py; `crash()` SIGKILLs a container's PID 1 (every process
of the node at once, its disk kept) and `start()` boots it again.

Needs root, debootstrap, systemd-container, nix-instantiate, iproute2 and the
service binaries (VALERIX_BIN_DIR, or target/release).

Usage: nixos/twin/ha.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "nixos/eval"))

import twin  # noqa: E402
from driver import Absent, Machine, Run  # noqa: E402

log = twin.log


class Node(Machine):
    """A node whose container the script may crash and boot again."""

    def __init__(self, name: str, container: twin.Container) -> None:
        super().__init__(name, container.pid, Absent(), log)
        self.container = container

    def crash(self) -> None:
        self.log("forced crash")
        self.container.crash()

    def start(self, allow_reboot: bool = False) -> None:
        if self.container.proc.poll() is None:
            return
        self.log("booting again")
        self.container.boot()
        self.pid = self.container.pid
        # The test driver's start() returns once it can run commands in the VM.
        self._retry("the container's systemd never answered", lambda: self._run("systemctl show --property=Version", timeout=10)[0] == 0, 60)


def network_unit(root: Path, address: str) -> None:
    """The node's address on host0 before network.target, as the NixOS test
    framework configures the VM's interface on its test network."""
    unit = root / "etc/systemd/system/twin-address.service"
    unit.write_text(
        "[Unit]\n"
        "Description=The node's address on the twin's bridge\n"
        "DefaultDependencies=no\n"
        "Before=network-pre.target network.target network-online.target\n"
        "Wants=network-pre.target\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=true\n"
        "ExecStart=/usr/sbin/ip link set host0 up\n"
        f"ExecStart=/usr/sbin/ip address add {address}/24 dev host0\n"
    )
    for target in ("network-online.target", "multi-user.target"):
        wants = root / f"etc/systemd/system/{target}.wants"
        wants.mkdir(exist_ok=True)
        (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the run's directories (overlays, console logs)")
    args = ap.parse_args()
    # A stopped run still stops its containers and removes its bridge (finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        sys.exit("twin: needs root (debootstrap, mount, systemd-nspawn, a bridge)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "nix-instantiate", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"twin: `{tool}` not found")

    import check

    ev = check.evaluate(check.workspace_binaries())
    test = ev["tests"]["vm-ha"]
    nodes = test["nodes"]
    addresses = check.test_addresses(nodes)
    package_path = nodes["app"]["services"]["valerix-order"]["serviceConfig"]["ExecStart"].split("/bin/")[0]
    log(f"evaluated nixos/tests/ha.nix: nodes {', '.join(sorted(nodes))}")

    lower = twin.base_root()
    bridge = f"vxha{os.getpid() % 100000}"
    twin.sh("ip", "link", "add", bridge, "type", "bridge")
    twin.sh("ip", "link", "set", bridge, "up")
    overlays: dict[str, twin.Overlay] = {}
    machines: dict[str, Node] = {}
    ok = False
    try:
        for name in sorted(nodes):
            overlay = overlays[name] = twin.Overlay(lower)
            skipped = twin.install(overlay.root, nodes[name], package_path)
            if skipped:
                raise SystemExit(f"twin: {name} has units the twin cannot run: {skipped}")
            network_unit(overlay.root, addresses[name][0])
        for name in sorted(nodes):
            # A container of an earlier run that outlived it keeps its host
            # side veth, and this one's would not come up.
            subprocess.run(["ip", "link", "delete", f"vb-valerix-{name}"], check=False, stderr=subprocess.DEVNULL)
            container = twin.Container(overlays[name].root, f"valerix-{name}", bridge=bridge)
            machines[name] = Node(name, container)
            log(f"booted {name} at {addresses[name][0]} (container PID 1 = host PID {container.pid})")
        for m in machines.values():
            m.wait_until_succeeds(
                "systemctl is-system-running --wait || systemctl is-system-running | grep -qx degraded", timeout=180
            )
        run = Run(machines, log)
        try:
            run.execute("nixos/tests/ha.nix", test["testScript"])
        except Exception as err:  # the failing subtest is already recorded
            log(f"the script stopped: {type(err).__name__}: {err}")
            for m in machines.values():
                if m.container.proc.poll() is None:
                    print(f"---- {m.name}: the journal's last 120 lines ----")
                    print(m._run("journalctl -b --no-pager -n 120 -o short-monotonic", timeout=60)[1])
        ok = twin.report(run, [], "nixos/tests/ha.nix against systemd in four systemd-nspawn containers")
    finally:
        for m in machines.values():
            m.container.stop()
        for overlay in overlays.values():
            overlay.close(args.keep)
        subprocess.run(["ip", "link", "delete", bridge], check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
