#!/usr/bin/env python3
"""The systemd twin: the NixOS module's units, run by a real systemd.

Nix cannot build here, but systemd can run what the module asks of it. This
program:

1. evaluates the stack VM test's node (nixos/tests/stack.nix) with the
   vendored nixpkgs lib (nixos/eval/eval.nix, the same evaluation CI checks);
2. renders every unit it defines (services, timers, targets, the job
   scripts, tmpfiles, users and groups, pgbackrest.conf) as NixOS would
   (nixos/twin/render.py cites the rules), store paths and all;
3. boots them in a Debian trixie root (systemd 257, Debian's PostgreSQL 17,
   Prometheus and pgBackRest) with systemd-nspawn on a private network;
   PostgreSQL runs as the module's evaluation defines `postgresql.service`,
   hardening included (nixos/eval/stubs.nix mirrors nixpkgs'
   nixos/modules/services/databases/postgresql.nix);
4. runs stack.nix's testScript against it through nixos/twin/driver.py, a
   `Machine` with the test driver's methods. What the twin lacks (Grafana,
   Jaeger) is reported as skipped, by subtest and step.

The root is built once with debootstrap and cached
($VALERIX_TWIN_CACHE, default /var/cache/valerix-twin); each run works on an
overlay over it, so the cache stays clean. Needs root, debootstrap,
systemd-container (systemd-nspawn), nix-instantiate (nix-bin) and the
release binaries (cargo build --release, or VALERIX_BIN_DIR).

Usage: nixos/twin/twin.py [--keep] [--only SUBTEST_SUBSTRING]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "nixos/eval"))

import render  # noqa: E402
from driver import Absent, Machine, Run  # noqa: E402

SUITE = "trixie"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "postgresql",
    "prometheus",
    "pgbackrest",
    "curl",
    "jq",
    "procps",
    "iproute2",
    # database.ha (nixos/twin/ha.py): what nixpkgs' etcd, patroni and haproxy
    # modules run.
    "etcd-server",
    "patroni",
    "haproxy",
]
# Bumped when the root's preparation below changes, so a cached root is rebuilt.
ROOT_RECIPE = 2
MIRROR = os.environ.get("VALERIX_TWIN_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("VALERIX_TWIN_CACHE", "/var/cache/valerix-twin"))

# What the twin cannot run, and why (the VM test runs them).
ABSENT = Absent(
    units={
        "grafana.service": "Grafana is not packaged by Debian; the VM test runs it",
        "valerix-grafana-secrets.service": "only Grafana needs it",
        "valerix-jaeger.service": "Jaeger is not packaged by Debian; the VM test runs it",
    },
    ports={
        3030: "Grafana's port",
        16686: "Jaeger's UI and API",
        4317: "Jaeger's OTLP/gRPC receiver",
        4318: "Jaeger's OTLP/HTTP receiver",
    },
    commands={
        "grafana-get": "asks Grafana",
        "grafana-dashboard-provisioned": "asks Grafana",
        "grafana-alert-rule-provisioned": "asks Grafana",
        "jaeger-has-service": "asks Jaeger",
    },
)

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[twin {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, **kw)


# ------------------------------------------------------------------ the root


def base_root() -> Path:
    """The cached Debian root, built once."""
    key = hashlib.sha256(json.dumps([SUITE, PACKAGES, ROOT_RECIPE]).encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    if (root / ".valerix-twin-complete").exists():
        log(f"Debian {SUITE} root: cached at {root}")
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f"{SUITE}-{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    log(f"building the Debian {SUITE} root with debootstrap ({', '.join(PACKAGES)}) ...")
    started = time.monotonic()
    sh(
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        SUITE, building, MIRROR,
        stdout=subprocess.DEVNULL,
    )
    # Debian's own cluster and the units its packages enabled: the module's
    # configuration decides what runs, as on NixOS.
    for d in building.glob("etc/postgresql/*/main"):
        shutil.rmtree(d)
    for d in building.glob("var/lib/postgresql/*/main"):
        shutil.rmtree(d)
    for wants in building.glob("etc/systemd/system/*.wants/*"):
        if wants.name.split("@")[0].removesuffix(".service") in (
            "postgresql", "prometheus", "pgbackrest", "etcd", "patroni", "haproxy",
        ):
            wants.unlink()
    (building / "etc/machine-id").write_text("")
    (building / ".valerix-twin-complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    building.rename(root)
    log(f"root built in {time.monotonic() - started:.0f} s")
    return root


class Overlay:
    """A writable overlay over the cached root, gone after the run."""

    def __init__(self, lower: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="valerix-twin-", dir=os.environ.get("VALERIX_TWIN_RUN_DIR")))
        self.root = self.dir / "root"
        for d in ("upper", "work", "root"):
            (self.dir / d).mkdir()
        sh(
            "mount", "-t", "overlay", "overlay",
            "-o", f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
            self.root,
        )

    def close(self, keep: bool) -> None:
        subprocess.run(["umount", "-l", str(self.root)], check=False)
        if keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ installing


def release_bins() -> Path:
    if os.environ.get("VALERIX_BIN_DIR"):
        return Path(os.environ["VALERIX_BIN_DIR"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return target / "release"


def chroot(root: Path, *argv: str) -> None:
    sh("chroot", root, *argv, stdout=subprocess.DEVNULL)


class Store:
    """Real files at the store paths the rendered units and configs name."""

    def __init__(self, root: Path, package: str, bins: Path) -> None:
        self.root = root
        self.package = package
        self.bins = bins
        self.done: set[str] = set()

    def put(self, path: str, text: str, mode: int = 0o444) -> None:
        dest = self.root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        dest.chmod(mode)
        self.done.add(path)

    def described(self, text: str) -> str:
        """Replaces each `/nix/store/eval:{...}` (a stand-in writeText or
        writeShellApplication) with a real store path holding its text."""
        decoder = json.JSONDecoder()
        while (at := text.find(render.EVAL_MARK)) >= 0:
            start = at + len(render.EVAL_MARK)
            try:
                obj, end = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                # Inside a JSON string of a generated JSON file (prometheus.yml's
                # rule_files): the description's quotes are escaped there.
                end = start
                while text[end] != '"' or text[end - 1] == "\\":
                    end += 1
                obj, used = decoder.raw_decode(json.loads(f'"{text[start:end]}"'))
            if obj.get("kind") == "yaml":
                # pkgs.formats.yaml: JSON is YAML, and what the program reads.
                inner = self.described(json.dumps(obj["value"], indent=1))
                self.debian_dirs(inner)
            else:
                inner = self.described(obj.get("text", ""))
            digest = hashlib.sha256(inner.encode()).hexdigest()[:32]
            path = f"/nix/store/{digest}-{obj['name']}"
            if obj.get("kind") == "shellApplication":
                path += f"/bin/{obj['name']}"
                # writeShellApplication: bash with errexit, nounset, pipefail.
                self.put(path, f"#!/bin/bash\nset -o errexit\nset -o nounset\nset -o pipefail\n\n{inner}", 0o555)
            else:
                self.put(path, inner)
            text = text[:at] + path + text[end:]
        return text

    def package_tree(self) -> None:
        """The Valerix package as flake.nix builds it: bin/ and share/valerix."""
        pkg = self.root / self.package.lstrip("/")
        (pkg / "bin").mkdir(parents=True, exist_ok=True)
        for b in ["order-service", "inventory-service", "payment-service", "api-gateway", "valerix"]:
            src = self.bins / b
            if not src.exists():
                sys.exit(f"twin: {src} is missing: build the release binaries first (cargo build --release)")
            shutil.copy2(src, pkg / "bin" / b)
        share = pkg / "share/valerix"
        share.mkdir(parents=True, exist_ok=True)
        for d in ["ui", "grafana", "migrations"]:
            shutil.copytree(ROOT / d, share / d, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules", "tests", "test-results", "package*.json"))
        self.done.add(self.package)

    def debian_links(self, text: str) -> None:
        """Other packages' store paths: their bin/<program> is Debian's program."""
        for path in sorted(set(re.findall(r"/nix/store/[0-9a-f]{32}-[A-Za-z0-9+._?=-]+/bin/[A-Za-z0-9._-]+", text))):
            entry = render.entry_of(path)
            if entry == self.package or path in self.done or (self.root / path.lstrip("/")).exists():
                continue
            program = Path(path).name
            found = self.which(program)
            if found is None:
                raise SystemExit(f"twin: {path}: no `{program}` in the Debian root")
            dest = self.root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(found)
            self.done.add(path)

    def debian_dirs(self, text: str) -> None:
        """A package's bin/ directory named as such (Patroni's `bin_dir`): Debian's
        directory of that package's programs."""
        for path in sorted(set(re.findall(r'/nix/store/[0-9a-f]{32}-[A-Za-z0-9+._?=-]+/bin(?=["\s]|$)', text))):
            dest = self.root / path.lstrip("/")
            if path in self.done or dest.exists():
                continue
            found = self.path_of(render.entry_of(path))[0]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(found)
            self.done.add(path)

    def which(self, program: str) -> str | None:
        dirs = sorted(str(p.relative_to(self.root)) for p in self.root.glob("usr/lib/postgresql/*/bin"))
        for d in ["usr/local/bin", "usr/bin", "usr/sbin", *dirs]:
            if (self.root / d / program).exists():
                return f"/{d}/{program}"
        return None

    def path_of(self, entry: str) -> list[str]:
        """A unit's `path` entry as bin/ directories of the twin."""
        if "postgresql" in entry:
            return [f"/{d.relative_to(self.root)}" for d in sorted(self.root.glob("usr/lib/postgresql/*/bin"))]
        return ["/usr/local/bin", "/usr/bin", "/usr/sbin"]


def pgbackrest_conf(cfg: dict) -> str:
    """pgbackrest.conf as nixos/modules/services/backup/pgbackrest.nix writes it
    (`normalize`: nulls dropped, attribute sets as k=v lists, booleans y/n;
    `flattenWithIndex`: repos and instances numbered in attribute order)."""

    def normalize(settings: dict) -> dict:
        out = {}
        for k, v in settings.items():
            if v is None:
                continue
            if isinstance(v, dict):
                v = [f"{a}={b}" for a, b in v.items()]
            if v is True:
                v = "y"
            elif v is False:
                v = "n"
            out[k] = v
        return out

    def flatten(attrs: dict, prefix: str) -> dict:
        out = {}
        for i, name in enumerate(sorted(attrs), start=1):
            for opt, v in attrs[name].items():
                out[f"{prefix}{i}-{opt}"] = v
        return out

    sections = {"global": normalize({**cfg.get("settings", {}), **flatten(cfg.get("repos", {}), "repo")})}
    for command, settings in sorted((cfg.get("commands") or {}).items()):
        if settings:
            sections[f"global:{command}"] = normalize(settings)
    for name, stanza in sorted((cfg.get("stanzas") or {}).items()):
        sections[name] = normalize({**stanza.get("settings", {}), **flatten(stanza.get("instances", {}), "pg")})
    text = ""
    for name, settings in sections.items():
        text += f"[{name}]\n"
        for k in sorted(settings):
            for v in settings[k] if isinstance(settings[k], list) else [settings[k]]:
                text += f"{k}={v}\n"
        text += "\n"
    return text


def install(root: Path, cfg: dict, package: str) -> list[str]:
    """Puts the evaluated configuration into the root; returns the units it skipped."""
    store = Store(root, package, release_bins())
    store.package_tree()

    # Users and groups (nixos/modules/config/users-groups.nix), where Debian
    # has none of that name; createHome as the activation script does it.
    existing_groups = {line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    existing_users = {line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()}
    for name in sorted(cfg["groups"]):
        if name not in existing_groups:
            chroot(root, "groupadd", "--system", name)
    for name, u in sorted(cfg["users"].items()):
        if name not in existing_users:
            chroot(root, "useradd", "--system", "--no-create-home", "--home-dir", u["home"], "--shell", "/usr/sbin/nologin", "--gid", u["group"], name)
        for g in u.get("extraGroups") or []:
            chroot(root, "usermod", "--append", "--groups", g, name)
        if u.get("createHome"):
            chroot(root, "install", "-d", "-m", u.get("homeMode") or "700", "-o", name, "-g", u["group"], u["home"])
    for name, g in sorted(cfg["groups"].items()):
        for member in g.get("members") or []:
            chroot(root, "usermod", "--append", "--groups", name, member)

    # The units.
    unit_dir = root / "etc/systemd/system"
    skipped = []
    units: list[render.Unit] = []
    for name, svc in sorted(cfg["services"].items()):
        if not svc.get("enable", True):
            continue
        if f"{name}.service" in ABSENT.units:
            skipped.append(f"{name}.service")
            continue
        units.append(render.service(name, svc, "/bin/bash", store.path_of))
    for name, t in sorted(cfg["sockets"].items()):
        units.append(render.socket(name, t))
    for name, t in sorted(cfg["timers"].items()):
        units.append(render.timer(name, t))
    for name, t in sorted(cfg["targets"].items()):
        units.append(render.target(name, t))
    for unit in units:
        for script in unit.scripts:
            # A job script may exec a package's program by its store path
            # (nixpkgs' patroni: `exec ${lib.getExe pkgs.patroni} <config>`).
            text = store.described(script.text)
            store.debian_links(text)
            store.put(script.path, text, 0o555)
        text = store.described(unit.text)
        store.debian_links(text)
        (unit_dir / unit.name).write_text(text)
        for kind, targets in (("wants", unit.wanted_by), ("requires", unit.required_by)):
            for t in targets:
                link_dir = unit_dir / f"{t}.{kind}"
                link_dir.mkdir(exist_ok=True)
                link = link_dir / unit.name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(f"/etc/systemd/system/{unit.name}")

    # environment.etc (nixos/modules/system/etc/etc.nix): a link to the store
    # path, or with a mode other than "symlink" a copy with that mode, root's.
    for name, e in sorted(cfg["etc"].items()):
        if not e["enable"]:
            continue
        target = root / "etc" / e["target"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        if e["source"] is not None:
            path = store.described(e["source"])
            store.debian_links((root / path.lstrip("/")).read_text())
            if e["mode"] == "symlink":
                target.symlink_to(path)
                continue
            text = (root / path.lstrip("/")).read_text()
        else:
            text = e["text"]
        target.write_text(text)
        target.chmod(0o444 if e["mode"] == "symlink" else int(e["mode"], 8))

    # What units read at run time beyond their own text: pgbackrest.conf and tmpfiles.
    if cfg["pgbackrest"]["enable"]:
        conf = root / "etc/pgbackrest/pgbackrest.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(store.described(pgbackrest_conf(cfg["pgbackrest"])))
        store.debian_links(conf.read_text())
    settings_text = json.dumps(cfg["postgresql"].get("settings") or {})
    store.debian_links(settings_text)
    if cfg["tmpfiles"]:
        (root / "etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/tmpfiles.d/00-nixos.conf").write_text("\n".join(cfg["tmpfiles"]) + "\n")

    # environment.systemPackages: the package's commands and the tests' helper
    # scripts on PATH (NixOS links them into /run/current-system/sw/bin).
    local_bin = root / "usr/local/bin"
    for b in (root / package.lstrip("/") / "bin").iterdir():
        (local_bin / b.name).unlink(missing_ok=True)
        (local_bin / b.name).symlink_to(f"{package}/bin/{b.name}")
    for p in cfg["systemPackages"]:
        if p.get("kind") == "shellApplication":
            path = store.described(render.EVAL_MARK + json.dumps(p))
            (local_bin / p["name"]).unlink(missing_ok=True)
            (local_bin / p["name"]).symlink_to(path)
    return skipped


# ------------------------------------------------------------------ booting


class Container:
    """A booted systemd-nspawn container: on a private network of its own, or
    with `bridge`, on a veth (`host0` inside) attached to that host bridge."""

    def __init__(self, root: Path, name: str, bridge: str | None = None) -> None:
        self.name = name
        self.root = root
        network = [f"--network-bridge={bridge}"] if bridge else ["--private-network"]
        self.argv = [
            "systemd-nspawn", "--register=no", "--keep-unit", "--quiet",
            *network, f"--machine={name}", "-D", str(root), "-b",
        ]
        self.log_file = open(root.parent / "console.log", "a")
        self.boot()

    def boot(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._leader()

    def crash(self) -> None:
        """A power cut: SIGKILL to the container's PID 1 ends its PID namespace,
        every process in it at once; its files stay for the next boot."""
        if self.proc.poll() is None:
            self.crash_leader()
            self.proc.wait(timeout=60)

    def _leader(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"systemd-nspawn exited ({self.proc.returncode}); see {self.log_file.name}")
            children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            for c in children:
                comm = Path(f"/proc/{c}/comm").read_text().strip() if Path(f"/proc/{c}/comm").exists() else ""
                if comm == "systemd":
                    return int(c)
            time.sleep(0.05)
        raise SystemExit("the container's systemd did not start within 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGRTMIN + 4)  # systemd: power off
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # The container's PID 1 first: killing systemd-nspawn alone
                # left it running with its services (an etcd member, its veth
                # `vb-<machine>`), and the next boot of a container of that
                # name came up without its network.
                self.crash_leader()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.log_file.close()

    def crash_leader(self) -> None:
        """SIGKILL to the container's PID 1: every process in it ends."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------ main


def evaluate() -> dict:
    import check

    ev = check.evaluate(check.workspace_binaries())
    return ev["tests"]["vm-stack"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the run's directory (overlay upper, console log)")
    ap.add_argument("--only", help="run only the subtests whose name contains this (and the first one)")
    ap.add_argument("--prepare", action="store_true", help="only build (or find) the cached Debian root, then exit")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("twin: needs root (debootstrap, mount, systemd-nspawn)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "nix-instantiate"):
        if shutil.which(tool) is None:
            sys.exit(f"twin: `{tool}` not found (Debian: apt-get install debootstrap systemd-container util-linux nix-bin)")

    if args.prepare:
        base_root()
        return 0
    test = evaluate()
    node = test["nodes"]["machine"]
    package = next(p for p in node["systemPackages"] if p.get("kind") == "rustPackage")
    package_path = next(
        v["serviceConfig"]["ExecStart"].split("/bin/")[0]
        for k, v in node["services"].items()
        if k == "valerix-order"
    )
    log(f"evaluated nixos/tests/stack.nix's node: {len(node['services'])} services, {len(node['timers'])} timers ({package['name']})")

    lower = base_root()
    overlay = Overlay(lower)
    container = None
    ok = False
    try:
        skipped_units = install(overlay.root, node, package_path)
        log(f"installed the units; not in the twin: {', '.join(skipped_units) or 'none'}")
        container = Container(overlay.root, "valerix-twin")
        log(f"booted systemd-nspawn (container PID 1 = host PID {container.pid})")
        machine = Machine("machine", container.pid, ABSENT, log)
        machine.wait_until_succeeds("systemctl is-system-running --wait || systemctl is-system-running | grep -qx degraded", timeout=120)
        version = machine.succeed("systemctl --version | head -1").strip()
        log(f"running: {version}")
        run = Run({"machine": machine}, log)
        script = test["testScript"]
        if args.only:
            script = only(script, args.only)
        try:
            run.execute("nixos/tests/stack.nix", script)
        except Exception as err:  # the failing subtest is already recorded
            log(f"the script stopped: {type(err).__name__}: {err}")
            dump_journal(machine)
        ok = report(run, skipped_units)
    finally:
        if container is not None:
            container.stop()
        overlay.close(args.keep)
    return 0 if ok else 1


def only(script: str, wanted: str) -> str:
    """The script with only the first subtest and those naming `wanted`."""
    blocks, current, first = [], [], True
    for line in script.splitlines(keepends=True):
        if line.startswith("with subtest("):
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    kept = [blocks[0]]
    for b in blocks[1:]:
        if first or wanted in b[0]:
            kept.append(b)
        first = False
    return "".join("".join(b) for b in kept)


def dump_journal(machine: Machine) -> None:
    status, out = machine._run("journalctl -b --no-pager -n 300 -o short-monotonic", timeout=60)
    print("---- the container's journal, last 300 lines ----")
    print(out)


def report(run: Run, skipped_units: list[str], title: str = "nixos/tests/stack.nix against systemd in systemd-nspawn") -> bool:
    print(f"\n== systemd twin: {title}")
    for o in run.outcomes:
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[o.status]
        detail = f" -- {o.detail}" if o.detail else ""
        print(f"  {mark}  {o.name} ({o.seconds:.1f} s){detail}")
    counts = {s: sum(1 for o in run.outcomes if o.status == s) for s in ("passed", "failed", "skipped")}
    print(f"  units not in the twin: {', '.join(skipped_units) or 'none'}")
    print(f"twin: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return counts["failed"] == 0 and counts["passed"] > 0


if __name__ == "__main__":
    sys.exit(main())
