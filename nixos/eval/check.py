#!/usr/bin/env python3
"""Evaluates the Nix side of Valerix without Nix builds and checks the result.

`nix-instantiate` (Debian's nix-bin is enough) evaluates nixos/eval/eval.nix
with the nixpkgs lib in nixos/vendor/nixpkgs-lib (or $NIXPKGS_LIB): flake.nix
with stand-in packages, nixos/example/host.nix (and its fragment valerix.nix inside a
host of its own), a host with only
`services.valerix.enable = true`, a `split` host (inventory and payment on
another host), a database.ha node that also runs the services, and every
node of the three VM tests, each
through `lib.evalModules` with nixos/eval/stubs.nix. An unknown option, a
wrong type or a failed assertion fails that evaluation. Then this script
checks the evaluated configurations against the rest of the repository:

- every service unit: Type=notify, NotifyAccess=main, WatchdogSec, ExecStart
  on a binary the package installs, an Environment= naming only variables that
  binary reads (its own `--help`, plus what the runtime reads itself), every
  `%d/<id>` credential handed over with LoadCredential=, the database reached
  as the contract says (local: After=/Wants=postgresql.target, peer auth as
  the unit's user; remote: pg_hba lines that admit the other nodes over IPv4
  and IPv6), upstream URLs pointing at the other units' sockets or ports;
- the tokens (docs/CONTRACT.md "Who may call what"): the gateway loads the
  operator's, every service the services' one once an address is not local,
  from files outside the Nix store; the generator of the default files is
  ordered before them and run in a scratch directory; the split host without
  serviceTokenFile is refused;
- database.ha: Patroni's settings as measured (ttl 10, loop_wait 2,
  retry_timeout 4, synchronous mode, pg_rewind, etcd3), the etcd member, the
  passwords only through LoadCredential=, pg_hba admitting each role from the
  nodes (and the service hosts) by password, HAProxy checking every node's
  REST API, the services' URL written by its generator (run in a scratch
  directory) and loaded as a credential; nine combinations the module refuses;
- Prometheus scraping exactly the services' listen addresses, Grafana's
  provisioning paths existing in the package (as flake.nix's postInstall lays
  out share/valerix), the datasource uids the dashboards and alert refer to;
- safe defaults and a description on every `services.valerix` option;
- `nix run`'s app and the devShell providing the commands they need;
- each VM test's testScript compiles (Python) and every command it runs in a
  VM, and every command of the helper scripts it calls, is on that node's
  PATH (environment.systemPackages plus the base system, see stubs.nix), with
  units, users, ports and the workspace binaries' flags that exist there.

Usage: nixos/eval/check.py   (from anywhere; CI=true makes a missing
nix-instantiate an error instead of a skip). VALERIX_BIN_DIR may point at
already built service binaries; otherwise they are built with cargo.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import shell  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EVAL_MARK = "/nix/store/eval:"

# The services' binaries (docs/CONTRACT.md), which run as systemd units.
SERVICE_BINARIES = {"order-service", "inventory-service", "payment-service", "api-gateway"}
# Read by tokio's runtime builder (#[tokio::main]), not by clap.
TOKIO_ENV = {"TOKIO_WORKER_THREADS"}
# Driver globals of the NixOS test driver (nixos/lib/test-driver/src/test_driver/driver.py).
DRIVER_GLOBALS = {
    "start_all",
    "join_all",
    "subtest",
    "retry",
    "log",
    "driver",
    "machines",
    "vlans",
    "create_machine",
    "polling_condition",
    "serial_stdout_on",
    "serial_stdout_off",
    "run_tests",
    "test_script",
    "os",
    "Machine",
}
# Machine methods whose string arguments are shell commands run in the VM.
SHELL_METHODS = {"succeed", "fail", "execute", "wait_until_succeeds", "wait_until_fails"}
# The tokens' files the module generates when missing (nixos/module.nix, stateDir).
DEFAULT_TOKEN_FILES = {
    "operator-token": "/var/lib/valerix/operator-token",
    "service-token": "/var/lib/valerix/service-token",
}
TOKEN_VARS = {"operator-token": "VALERIX_OPERATOR_TOKEN_FILE", "service-token": "VALERIX_SERVICE_TOKEN_FILE"}
# The ports Jaeger's built-in all-in-one configuration listens on (OTLP gRPC,
# OTLP HTTP, UI/API), as the module's jaeger.enable documents.
JAEGER_PORTS = {4317, 4318, 16686}


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []

    def error(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def check(self, ok: bool, where: str, msg: str) -> bool:
        if not ok:
            self.error(where, msg)
        return ok


R = Report()


# ---------------------------------------------------------------- inputs


def workspace_binaries() -> list[str]:
    """The executables `cargo build` of the workspace produces (what buildRustPackage installs)."""
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    bins = set()
    for member in members:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        for b in manifest.get("bin", []):
            bins.add(b["name"])
        if (ROOT / member / "src/main.rs").exists() and not manifest.get("bin"):
            bins.add(manifest["package"]["name"])
        for extra in (ROOT / member / "src/bin").glob("*.rs") if (ROOT / member / "src/bin").is_dir() else []:
            bins.add(extra.stem)
    return sorted(bins)


def bin_dir() -> Path:
    if os.environ.get("VALERIX_BIN_DIR"):
        return Path(os.environ["VALERIX_BIN_DIR"])
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug"


def binaries_help(bins: list[str]) -> dict[str, str]:
    """`<binary> --help` of every service binary and of the valerix CLI."""
    wanted = sorted(SERVICE_BINARIES | {"valerix"})
    if not os.environ.get("VALERIX_BIN_DIR"):
        cmd = ["cargo", "build", "--quiet", "--locked"]
        for b in wanted:
            cmd += ["--bin", b]
        subprocess.run(cmd, cwd=ROOT, check=True)
    directory = bin_dir()
    helps = {}
    for b in wanted:
        if b not in bins:
            R.error("workspace", f"{b} is not a binary of the Cargo workspace")
            continue
        helps[b] = subprocess.run(
            [directory / b, "--help"], capture_output=True, text=True, check=True
        ).stdout
    return helps


def help_envs(text: str) -> set[str]:
    return set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", text))


def help_flags(text: str) -> set[str]:
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)", text))


def runtime_envs() -> set[str]:
    """The variables the runtime reads outside clap (services/lib/runtime/src/telemetry/)."""
    src = "".join(
        (ROOT / "services/lib/runtime/src" / f).read_text() for f in ("telemetry/otel.rs", "telemetry/mod.rs")
    )
    return set(re.findall(r"\b(OTEL_[A-Z_]*[A-Z]|RUST_LOG)\b", src))


def repo_entries() -> dict[str, str]:
    """The repository's tracked top-level entries and their kind."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    entries = {}
    for f in files.splitlines():
        top, sep, _ = f.partition("/")
        entries[top] = "directory" if sep else "regular"
    return entries


def files_the_build_reads() -> set[str]:
    """Top-level entries the Rust sources and tests read outside their crate:
    `include_str!("../../X/..")`, `CARGO_MANIFEST_DIR/../../../X`, `repo_root().join("X/..")`."""
    tops = set(repo_entries())
    wanted = set()
    for rs in (ROOT / "services").rglob("*.rs"):
        text = rs.read_text()
        for m in re.finditer(r'"(?:\.\./)+([A-Za-z.][\w.-]*)', text):
            wanted.add(m.group(1))
        for m in re.finditer(r'repo_root\(\)\.join\("([\w.-]+)', text):
            wanted.add(m.group(1))
    return wanted & tops


def evaluate(bins: list[str]) -> dict:
    lib = os.environ.get("NIXPKGS_LIB") or str(ROOT / "nixos/vendor/nixpkgs-lib/lib")
    cmd = [
        "nix-instantiate",
        "--option",
        "build-users-group",
        "",
        "--eval",
        "--strict",
        "--json",
        str(ROOT / "nixos/eval/eval.nix"),
        "--arg",
        "workspaceBins",
        "[ " + " ".join(json.dumps(b) for b in bins) + " ]",
        "--argstr",
        "libPath",
        lib,
        "--arg",
        "repoEntries",
        "{ " + " ".join(f"{json.dumps(k)} = {json.dumps(v)};" for k, v in sorted(repo_entries().items())) + " }",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit("nixos/eval/check.py: the evaluation failed (above)")
    print(f"evaluated with the nixpkgs lib at {os.path.relpath(lib, ROOT) if lib.startswith(str(ROOT)) else lib}")
    return json.loads(done.stdout)


def described(value: str) -> dict | None:
    """The description a stand-in writeText/writeShellApplication carries in its path."""
    at = value.find(EVAL_MARK)
    if at < 0:
        return None
    obj, _ = json.JSONDecoder().raw_decode(value, at + len(EVAL_MARK))
    return obj


# --------------------------------------------------------- the package


class Package:
    """The valerix package: its bin/ and share/valerix laid out as postInstall does."""

    def __init__(self, ev: dict) -> None:
        self.bins = set(ev["bins"])
        self.post_install = ev["postInstall"]
        copied = re.search(r"cp -r ([\w .-]+?) \$out/share/valerix/?\s*$", self.post_install, re.M)
        R.check(copied is not None, "flake.nix postInstall", "no `cp -r ... $out/share/valerix/` line found")
        self.share_dirs = copied.group(1).split() if copied else []
        self.removed = set()
        for m in re.finditer(r"rm -rf \$out/share/valerix/(\S+)", self.post_install):
            target = m.group(1)
            brace = re.match(r"(.*)\{(.*)\}$", target)
            for t in ([brace.group(1) + x for x in brace.group(2).split(",")] if brace else [target]):
                self.removed.add(t)
        for d in self.share_dirs:
            R.check((ROOT / d).is_dir(), "flake.nix postInstall", f"copies {d}/ but the repository has no {d}/")

    def repo_path(self, store_path: str, prefix: str, where: str) -> Path | None:
        """The repository file behind `<package>/share/valerix/...`, if the package has it."""
        share = prefix + "/share/valerix/"
        if not R.check(store_path.startswith(share), where, f"{store_path} is not under the package's share/valerix"):
            return None
        rel = store_path[len(share) :].rstrip("/")
        top = rel.split("/")[0]
        if not R.check(top in self.share_dirs, where, f"{rel}: postInstall copies only {self.share_dirs}"):
            return None
        if not R.check(
            not any(rel == r or rel.startswith(r + "/") for r in self.removed),
            where,
            f"{rel} is removed by postInstall",
        ):
            return None
        path = ROOT / rel
        R.check(path.exists(), where, f"{rel} does not exist in the repository, so not in the package")
        return path


# ------------------------------------------------------- units and hosts


def host_port(listen: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[(.*)\]:(\d+)|([^:]*):(\d+)", listen)
    if not m:
        raise ValueError(listen)
    return (m.group(1) or m.group(3)), int(m.group(2) or m.group(4))


def connect_target(listen: str) -> str:
    host, port = host_port(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def credentials(unit: dict) -> dict[str, str]:
    creds = unit["serviceConfig"].get("LoadCredential", [])
    creds = creds if isinstance(creds, list) else [creds]
    return dict(c.split(":", 1) for c in creds)


def service_units(cfg: dict, package: str) -> dict[str, dict]:
    """The units that run a service binary of the valerix package (not the CLI's jobs)."""
    prefix = package + "/bin/"
    return {
        name: u
        for name, u in cfg["services"].items()
        if str(u["serviceConfig"].get("ExecStart", "")).startswith(prefix)
        and str(u["serviceConfig"]["ExecStart"])[len(prefix) :].split(" ")[0] != "valerix"
    }


def check_host(where: str, cfg: dict, pkg: Package, helps: dict[str, str], runtime: set[str], nodes=None):
    """Every check on one evaluated configuration that runs the Valerix module."""
    vx = cfg["valerix"]
    if not vx or not vx["enable"]:
        return
    package = vx["package"]
    units = service_units(cfg, package)
    enabled = {n for n in ("order", "inventory", "payment", "gateway") if vx[n]["enable"]}
    R.check(
        set(units) == {f"valerix-{n}" for n in enabled},
        where,
        f"service units {sorted(units)} do not match the enabled services {sorted(enabled)}",
    )
    listen_of: dict[str, str] = {}
    socket_of: dict[str, str] = {}
    for name, unit in sorted(units.items()):
        w = f"{where} {name}"
        sc, env = unit["serviceConfig"], unit["environment"]
        exec_start = sc["ExecStart"]
        binary = exec_start[len(package) + len("/bin/") :]
        R.check(binary in pkg.bins, w, f"ExecStart {exec_start}: the package installs no {binary}")
        if not R.check(binary in SERVICE_BINARIES, w, f"ExecStart runs {binary!r}, not a service binary"):
            continue
        R.check(unit["script"] == "", w, "has a script: Type=notify needs ExecStart on the binary itself")
        R.check(sc.get("Type") == "notify", w, f"Type={sc.get('Type')}, not notify")
        R.check(sc.get("NotifyAccess") == "main", w, f"NotifyAccess={sc.get('NotifyAccess')}, not main")
        R.check(bool(sc.get("WatchdogSec")), w, "no WatchdogSec")
        R.check(sc.get("Restart") in ("on-failure", "always"), w, f"Restart={sc.get('Restart')}")
        user = sc.get("User")
        R.check(user in cfg["users"], w, f"User={user} is not a user of this host")

        known = help_envs(helps[binary]) | runtime | TOKIO_ENV
        unknown = sorted(set(env) - known)
        R.check(not unknown, w, f"Environment= names {unknown}, which {binary} does not read ({binary} --help)")
        R.check(env.get("OTEL_SERVICE_NAME") == binary, w, f"OTEL_SERVICE_NAME={env.get('OTEL_SERVICE_NAME')}")
        R.check("VALERIX_GREMLINS" not in env or vx["gremlins"]["enable"], w, "gremlins on without gremlins.enable")

        creds = credentials(unit)
        for var, value in env.items():
            for cred in re.findall(r"%d/([\w.-]+)", str(value)):
                R.check(cred in creds, w, f"{var}={value} but no LoadCredential={cred}:...")
        for cred, path in creds.items():
            R.check(path.startswith("/"), w, f"LoadCredential={cred}:{path} is not an absolute path")

        svc = name.removeprefix("valerix-")
        listen = env.get("VALERIX_LISTEN", "")
        R.check(
            listen == (f"[{vx[svc]['listenAddress']}]" if ":" in vx[svc]["listenAddress"] else vx[svc]["listenAddress"])
            + f":{vx[svc]['port']}",
            w,
            f"VALERIX_LISTEN={listen} is not listenAddress:port",
        )
        listen_of[name] = listen
        if "VALERIX_UNIX_SOCKET" in env:
            sock = env["VALERIX_UNIX_SOCKET"]
            socket_of[name] = sock
            # Socket activation: the unit's .socket listens on this path and on
            # VALERIX_LISTEN and passes both; only the valerix user connects. No
            # RuntimeDirectory= for it: stopping the service would delete the
            # socket file the .socket unit still listens on.
            sock_unit = cfg.get("sockets", {}).get(name, {})
            streams = sock_unit.get("listenStreams", [])
            R.check(sock in streams and listen in streams, w,
                    f"{name}.socket listens on {streams}, not on {listen} and {sock}")
            scfg = sock_unit.get("socketConfig", {})
            R.check((scfg.get("SocketUser"), scfg.get("SocketMode")) == (sc.get("User"), "0700"), w,
                    f"{sock}: SocketUser={scfg.get('SocketUser')} SocketMode={scfg.get('SocketMode')}")
            R.check("RuntimeDirectory" not in sc, w, "RuntimeDirectory= would remove the passed socket's file on stop")
            R.check(f"{name}.socket" in unit["requires"] and f"{name}.socket" in unit["after"], w,
                    f"not ordered after its own {name}.socket")
        if "VALERIX_UI_DIR" in env:
            ui = pkg.repo_path(env["VALERIX_UI_DIR"], package, w)
            if ui:
                R.check((ui / "index.html").is_file(), w, f"{ui} has no index.html")

        check_database(w, cfg, unit, env, creds, nodes)

    # Upstream URLs point at the unit that serves them, which starts first.
    url_vars = {"ORDER_URL": "valerix-order", "INVENTORY_URL": "valerix-inventory", "PAYMENT_URL": "valerix-payment"}
    for name, unit in sorted(units.items()):
        for var, target in url_vars.items():
            url = unit["environment"].get(var)
            if url is None:
                continue
            w = f"{where} {name} {var}"
            if target not in units:
                continue
            if url.startswith("unix:"):
                R.check(url[5:] == socket_of.get(target), w, f"{url} is not {target}'s socket {socket_of.get(target)}")
                R.check(unit["serviceConfig"].get("User") == units[target]["serviceConfig"].get("User"), w,
                        "a socket of mode 0700 can only be used by the same user")
            else:
                R.check(url == f"http://{connect_target(listen_of[target])}", w, f"{url} is not where {target} listens")
            R.check(f"{target}.service" in unit["after"], w, f"not After={target}.service")

    check_tokens(where, cfg, units)
    check_ha(where, cfg, units, nodes)
    check_prometheus(where, cfg, pkg, package, units, listen_of)
    check_grafana(where, cfg, pkg, package)
    check_backup(where, cfg, package, helps)


def check_tokens(where: str, cfg: dict, units: dict[str, dict]) -> None:
    """docs/CONTRACT.md "Who may call what": the gateway loads the operator's token;
    every service loads the services' token once one of order, inventory or payment
    is reachable beyond loopback (or served by another host), or when it is set.
    Both with LoadCredential= from a file outside the Nix store, the variable
    naming %d/<id>; a file at the module's default path is generated first."""
    vx = cfg["valerix"]
    non_local = [n for n in ("order", "inventory", "payment") if not is_loopback(vx[n]["listenAddress"])]
    service_file = vx["serviceTokenFile"] or (DEFAULT_TOKEN_FILES["service-token"] if non_local else None)
    generated: set[str] = set()
    for name, unit in sorted(units.items()):
        w = f"{where} {name}"
        env, creds = unit["environment"], credentials(unit)
        want = {}
        if name == "valerix-gateway":
            want["operator-token"] = vx["gateway"]["operatorTokenFile"]
        if service_file is not None:
            want["service-token"] = service_file
        for cred, var in TOKEN_VARS.items():
            if cred not in want:
                R.check(cred not in creds and var not in env, w, f"loads {cred}, which is not this unit's"
                        + ("" if name == "valerix-gateway" or cred == "operator-token"
                           else f" (every service address is local: {non_local})"))
                continue
            path = want[cred]
            why = f" (non-local: {non_local})" if cred == "service-token" and non_local else ""
            R.check(creds.get(cred) == path, w, f"LoadCredential={cred}:{creds.get(cred)}, want {path}{why}")
            R.check(env.get(var) == f"%d/{cred}", w, f"{var}={env.get(var)}, want %d/{cred}")
            R.check(not path.startswith("/nix/store/"), w, f"{cred} from {path}: the Nix store is world-readable")
            if path == DEFAULT_TOKEN_FILES[cred]:
                generated.add(path)
                for key in ("requires", "after"):
                    R.check("valerix-tokens.service" in unit[key], w,
                            f"{key} lacks valerix-tokens.service, which writes {path} (a missing credential fails the start)")
            elif path.startswith("/etc/"):
                etc = [e for e in cfg["etc"].values() if e["target"] == path[len("/etc/"):]]
                R.check(any(e["enable"] and e["hasContent"] for e in etc), w,
                        f"{cred} from {path}, which environment.etc does not provide")
        leaked = sorted(v for v, value in env.items() if str(value) in want.values())
        R.check(not leaked, w, f"{leaked} name a token's file itself, not its credential")

    tokens = cfg["services"].get("valerix-tokens")
    w = f"{where} valerix-tokens"
    if not generated:
        R.check(tokens is None, w, "a token generator, but no unit loads a token from the default paths")
        return
    if not R.check(tokens is not None, w, f"no unit generates {sorted(generated)}"):
        return
    sc = tokens["serviceConfig"]
    R.check(sc.get("Type") == "oneshot" and sc.get("RemainAfterExit") is True, w, "not a oneshot that remains active")
    state = sc.get("StateDirectory")
    R.check(all(str(Path(p).parent) == f"/var/lib/{state}" for p in generated), w,
            f"StateDirectory={state} does not hold {sorted(generated)} (ProtectSystem=strict)")
    run_token_script(w, tokens["script"], generated, sc.get("UMask"))


def run_token_script(w: str, script: str, files: set[str], umask: str | None) -> None:
    """Runs the generator in a scratch directory (its paths moved there): every file
    written is 64 hex digits, mode 0600; a second run changes nothing."""
    import tempfile

    if not R.check(umask is not None, w, "no UMask= (the files would be world-readable)"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        moved = script
        for f in files:
            moved = moved.replace(f, tmp + f)
            Path(tmp + f).parent.mkdir(parents=True, exist_ok=True)
        for f in files:
            R.check(tmp + f in moved, w, f"the script does not name {f}")

        def run() -> dict[str, str]:
            done = subprocess.run(["bash", "-euc", f"umask {umask}\n{moved}"], capture_output=True, text=True)
            R.check(done.returncode == 0, w, f"the script failed: {done.stderr.strip()}")
            return {f: Path(tmp + f).read_text() if Path(tmp + f).exists() else "" for f in files}

        first = run()
        for f, text in first.items():
            R.check(re.fullmatch(r"[0-9a-f]{64}\n", text) is not None, w, f"{f} holds {text!r}, not 32 random bytes in hex")
            if Path(tmp + f).exists():
                mode = Path(tmp + f).stat().st_mode & 0o777
                R.check(mode == 0o600, w, f"{f} has mode {mode:o}, not 600")
        R.check(len(set(first.values())) == len(first), w, "two tokens are the same")
        R.check(run() == first, w, "a second run replaced a token that was there")


# database.ha: the settings measured with Debian's patroni 3.0.2, etcd 3.4.23 and
# haproxy 2.6 (ttl/loop_wait/retry_timeout: failover in ~9 s), and the ports the
# module fixes for every host.
HA_DCS = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4, "synchronous_mode": True}
HA_PORTS = {"pg": 5432, "rest": 8008, "etcd": 2379, "peer": 2380}
HA_URL_FILE = "/run/valerix-database/url"
HA_HAPROXY_LINES = [
    "mode tcp",
    "option httpchk GET /primary",
    "http-check expect status 200",
    "default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions",
]


def hba_admits(lines: list[str], kind: str, db: str, user: str, addr: str) -> bool:
    """Some pg_hba line of `kind` (host, local) lets `user` into `db` from `addr` with a password."""
    for line in lines:
        f = line.split()
        if len(f) < 5 or f[0] != kind or f[1] not in (db, "all") or f[2] not in (user, "all"):
            continue
        if "/" in f[3] and ipaddress.ip_address(addr) in ipaddress.ip_network(f[3], strict=False):
            return f[4] in ("scram-sha-256", "md5")
    return False


def check_ha(where: str, cfg: dict, units: dict[str, dict], nodes) -> None:
    """database.ha: etcd and Patroni on a database node as nixpkgs' modules get
    them, HAProxy in front of every node on a host whose services use the
    database, and the services' URL written from the password file."""
    ha = cfg["valerix"]["database"]["ha"]
    w = f"{where} database.ha"
    if not ha["enable"]:
        R.check(not (cfg["patroni"]["enable"] or cfg["etcd"]["enable"] or cfg["haproxy"]["enable"]), w,
                "Patroni, etcd or HAProxy on without database.ha")
        R.check("valerix-database-url" not in cfg["services"] and "valerix-database-ensure" not in cfg["services"], w,
                "a database.ha unit without database.ha")
        return
    members = ha["nodes"]
    if nodes is not None:
        addresses = test_addresses(nodes)
        for node, ip in sorted(members.items()):
            R.check(node in addresses and addresses[node][0] == ip, w,
                    f"{node} at {ip}, where the test network puts {addresses.get(node, ('no such node',))[0]}")
    name = ha["nodeName"]
    if name is not None:
        check_ha_node(w, cfg, ha, name)
    else:
        R.check(not cfg["patroni"]["enable"] and not cfg["etcd"]["enable"], w, "Patroni or etcd on a host that is no node")

    db_units = {n: u for n, u in units.items() if "DATABASE_URL_FILE" in u["environment"]}
    haproxy = cfg["haproxy"]
    if not db_units:
        R.check(not haproxy["enable"], w, "HAProxy on a host whose services do not use the database")
        return
    if not R.check(haproxy["enable"] and haproxy["config"], w, "services use the database, but HAProxy is off"):
        return
    conf = [line.strip() for line in haproxy["config"].splitlines()]
    for line in HA_HAPROXY_LINES + [f"bind 127.0.0.1:{ha['proxyPort']}"]:
        R.check(line in conf, w, f"HAProxy's configuration lacks `{line}`")
    servers = [re.fullmatch(r"server (\S+) (\S+):(\d+) check port (\d+)", line) for line in conf]
    servers = sorted(m.groups() for m in servers if m)
    want = sorted((n, ip, str(HA_PORTS["pg"]), str(HA_PORTS["rest"])) for n, ip in members.items())
    R.check(servers == want, w, f"HAProxy's servers {servers}, want every node checked on its REST API: {want}")
    for unit_name, unit in sorted(db_units.items()):
        uw = f"{where} {unit_name}"
        R.check(credentials(unit).get("database-url") == HA_URL_FILE, uw,
                f"LoadCredential=database-url:{credentials(unit).get('database-url')}, want {HA_URL_FILE}")
        for key in ("requires", "after"):
            R.check("valerix-database-url.service" in unit[key], uw, f"{key} lacks valerix-database-url.service, which writes {HA_URL_FILE}")
        for key in ("wants", "after"):
            R.check("haproxy.service" in unit[key], uw, f"{key} lacks haproxy.service")
        R.check("haproxy.service" not in unit["requires"], uw, "requires haproxy.service: its restart would restart the service")
    gen = cfg["services"].get("valerix-database-url")
    if R.check(gen is not None, w, f"no valerix-database-url unit writes {HA_URL_FILE}"):
        run_url_script(f"{where} valerix-database-url", gen, ha["proxyPort"])
    if nodes is not None:
        # Every node's PostgreSQL admits the valerix role from this host.
        here = next((n for n, c in nodes.items() if c is cfg), None)
        for node in sorted(members):
            hba = (nodes.get(node, {}).get("patroni", {}).get("settings") or {}).get("postgresql", {}).get("pg_hba", [])
            for addr in addresses.get(here, ()):
                if ":" in addr:
                    continue
                R.check(hba_admits(hba, "host", "valerix", "valerix", addr), w,
                        f"{node}'s pg_hba does not admit valerix@valerix from {here} at {addr}")


def check_ha_node(w: str, cfg: dict, ha: dict, name: str) -> None:
    members = ha["nodes"]
    patroni = cfg["patroni"]
    if not R.check(patroni["enable"] and name in members, w, f"node {name}: Patroni off or {name} not in nodes"):
        return
    s = patroni["settings"]
    dcs = s.get("bootstrap", {}).get("dcs", {})
    for key, value in {**HA_DCS, "synchronous_mode_strict": ha["synchronousModeStrict"]}.items():
        R.check(dcs.get(key) == value, w, f"bootstrap.dcs.{key} = {dcs.get(key)!r}, want {value!r}")
    # Patroni refuses a configuration where a leader could lose its key before it retried.
    R.check(dcs.get("loop_wait", 99) + 2 * dcs.get("retry_timeout", 99) <= dcs.get("ttl", 0), w,
            "loop_wait + 2 * retry_timeout > ttl")
    pg_dcs = dcs.get("postgresql", {})
    R.check(pg_dcs.get("use_pg_rewind") is True, w, "use_pg_rewind is off: the old leader could not rejoin")
    R.check(pg_dcs.get("parameters", {}).get("wal_retrieve_retry_interval") == "500ms", w,
            "wal_retrieve_retry_interval is not 500ms")
    R.check("etcd" not in s, w, "`etcd:` is Patroni's v2 client; etcd 3.4+ serves v2 only with --enable-v2")
    want_hosts = sorted(f"{ip}:{HA_PORTS['etcd']}" for ip in members.values())
    R.check(sorted(s.get("etcd3", {}).get("hosts", [])) == want_hosts, w, f"etcd3.hosts {s.get('etcd3')}, want {want_hosts}")
    ip = members[name]
    R.check(s.get("restapi", {}).get("listen") == f"{ip}:{HA_PORTS['rest']}", w,
            f"the REST API listens on {s.get('restapi', {}).get('listen')}, where HAProxy checks {ip}:{HA_PORTS['rest']}")
    R.check(s.get("postgresql", {}).get("listen") == f"{ip}:{HA_PORTS['pg']}", w,
            f"PostgreSQL listens on {s.get('postgresql', {}).get('listen')}")
    etcd = cfg["etcd"]
    want_cluster = sorted(f"{n}=http://{a}:{HA_PORTS['peer']}" for n, a in members.items())
    R.check(etcd["enable"] and etcd["name"] == name and sorted(etcd["initialCluster"]) == want_cluster, w,
            f"etcd member {etcd['name']} with initialCluster {etcd['initialCluster']}, want {name} in {want_cluster}")
    R.check(f"http://{ip}:{HA_PORTS['etcd']}" in etcd["listenClientUrls"], w, "etcd does not listen where Patroni looks")
    R.check(etcd["listenPeerUrls"] == [f"http://{ip}:{HA_PORTS['peer']}"], w, f"etcd's peers at {etcd['listenPeerUrls']}")
    # The passwords: files Patroni's script reads from its own credentials,
    # loaded from files outside the Nix store.
    unit = cfg["services"]["patroni"]
    creds = credentials(unit)
    for var, path in sorted(patroni["environmentFiles"].items()):
        m = re.fullmatch(r"/run/credentials/patroni\.service/([\w.-]+)", str(path))
        R.check(m is not None and m.group(1) in creds, w, f"{var} from {path}, which no LoadCredential= of patroni.service provides")
    R.check({"PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD"} <= set(patroni["environmentFiles"]), w,
            "the superuser's or the replication role's password is not given to Patroni")
    for cred, path in creds.items():
        R.check(not path.startswith("/nix/store/"), w, f"{cred} from {path}: the Nix store is world-readable")
    pg = s.get("postgresql", {})
    hba = pg.get("pg_hba", [])
    R.check(not any(line.split()[4:5] == ["trust"] for line in hba), w, "a pg_hba line trusts without a password")
    for other, addr in sorted(members.items()):
        for db, user in (("replication", "replicator"), ("postgres", "postgres"), ("valerix", "valerix")):
            R.check(hba_admits(hba, "host", db, user, addr), w, f"pg_hba does not admit {user}@{db} from {other} at {addr}")
    sock = pg.get("parameters", {}).get("unix_socket_directories")
    R.check(pg.get("use_unix_socket") is True and sock == "/run/patroni"
            and unit["serviceConfig"].get("RuntimeDirectory") == "patroni", w,
            f"Patroni's socket directory {sock} is not its unit's RuntimeDirectory")
    R.check(set(HA_PORTS.values()) <= set(cfg["firewall"]["allowedTCPPorts"]) or not cfg["firewall"]["enable"], w,
            f"the firewall does not open {sorted(HA_PORTS.values())}")
    ensure = cfg["services"].get("valerix-database-ensure")
    if R.check(ensure is not None, w, "no valerix-database-ensure unit creates the role and database"):
        sc = ensure["serviceConfig"]
        R.check("patroni.service" in ensure["after"] and sc.get("User") == unit["serviceConfig"].get("User"), w,
                "valerix-database-ensure is not after patroni.service as Patroni's user (peer map valerix-ha)")
        R.check(ensure["environment"].get("PGHOST") == sock, w, "valerix-database-ensure does not use Patroni's socket")
        R.check(credentials(ensure).get("password") == ha["passwordFile"], w, "valerix-database-ensure does not load passwordFile")
        script = ensure["script"]
        R.check(f"rest=http://{ip}:{HA_PORTS['rest']}\n" in script and '"$rest/primary"' in script
                and "CREATE DATABASE valerix OWNER valerix" in script, w,
                "valerix-database-ensure does not create the database when this node's REST API says primary")


def run_url_script(w: str, unit: dict, port: int) -> None:
    """valerix-database-url's script in a scratch directory: a good password gives the
    URL through HAProxy, mode 0600; one that would break the URL fails the unit."""
    import tempfile

    sc = unit["serviceConfig"]
    R.check(sc.get("Type") == "oneshot" and sc.get("RemainAfterExit") is True, w, "not a oneshot that remains active")
    R.check(sc.get("RuntimeDirectory") == Path(HA_URL_FILE).parent.name and sc.get("RuntimeDirectoryMode") == "0700", w,
            f"RuntimeDirectory={sc.get('RuntimeDirectory')} does not hold {HA_URL_FILE} (mode 0700)")
    R.check(credentials(unit).get("password") is not None, w, "no LoadCredential=password:...")
    with tempfile.TemporaryDirectory() as tmp:
        script = unit["script"].replace(str(Path(HA_URL_FILE).parent), tmp)
        creds = Path(tmp) / "creds"
        creds.mkdir()
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}

        def run(password: str) -> subprocess.CompletedProcess:
            (creds / "password").write_text(password + "\n")
            return subprocess.run(["bash", "-euc", f"umask {sc.get('UMask', '0022')}\n{script}"],
                                  capture_output=True, text=True, env=env)

        done = run("good-Pass.word~1")
        url = Path(tmp) / "url"
        if R.check(done.returncode == 0 and url.exists(), w, f"the script failed: {done.stderr.strip()}"):
            want = f"postgres://valerix:good-Pass.word~1@127.0.0.1:{port}/valerix\n"
            R.check(url.read_text() == want, w, f"wrote {url.read_text()!r}, want {want!r}")
            R.check(url.stat().st_mode & 0o777 == 0o600, w, f"the URL file has mode {url.stat().st_mode & 0o777:o}")
        for bad in ("has@sign", "with space", ""):
            R.check(run(bad).returncode != 0, w, f"accepted the password {bad!r}, which does not fit into a URL as is")


def check_backup(where: str, cfg: dict, package: str, helps: dict[str, str]) -> None:
    """backup.*: nixpkgs' pgBackRest module archiving the local PostgreSQL, its
    jobs, and the daily off-site upload by `valerix upload-offsite`."""
    w = f"{where} backup"
    b = cfg["valerix"]["backup"]
    upload = cfg["services"].get("valerix-backup-upload")
    timer = cfg["timers"].get("valerix-backup-upload")
    if not b["enable"]:
        R.check(upload is None and timer is None, w, "an off-site upload unit without backup.enable")
        return
    pg, pgbr = cfg["postgresql"], cfg["pgbackrest"]
    settings = pg["settings"]
    R.check(pg["enable"] and pgbr["enable"], w, "backups on, but PostgreSQL or services.pgbackrest is off")
    R.check(settings.get("archive_mode") == "on", w, f"archive_mode={settings.get('archive_mode')}")
    R.check(
        "/bin/pgbackrest --stanza=default archive-push" in str(settings.get("archive_command")),
        w,
        f"archive_command={settings.get('archive_command')} does not push to pgBackRest's stanza default",
    )
    R.check(settings.get("archive_timeout") == b["archiveTimeout"], w, "archive_timeout is not backup.archiveTimeout")
    R.check(pgbr["repos"].get("localhost", {}).get("path") == b["repository"], w, "repo1-path is not backup.repository")
    jobs = pgbr["stanzas"].get("default", {}).get("jobs", {})
    R.check(sorted(j["type"] for j in jobs.values()) == ["diff", "full"], w, f"jobs {jobs}: want one full, one diff")
    # One owner for the repository: archive-push runs as postgres inside the
    # hardened postgresql.service, so the repository is postgres's, writable
    # from that unit, and the jobs run as postgres too.
    owner = "postgres"
    pg_unit = cfg["services"].get("postgresql", {}).get("serviceConfig", {})
    rw = pg_unit.get("ReadWritePaths", [])
    R.check(b["repository"] in (rw if isinstance(rw, list) else [rw]), w,
            f"postgresql.service cannot write the repository (ReadWritePaths={rw}): archive_command would fail")
    R.check(f"d {b['repository']} 0750 {owner} {owner} - -" in cfg["tmpfiles"], w,
            f"the repository is not created as {owner}'s (tmpfiles {cfg['tmpfiles']})")
    home = cfg["users"].get("pgbackrest", {})
    R.check(not (home.get("createHome") and home.get("home") == b["repository"]), w,
            "the repository is the pgbackrest user's home: activation would hand it back to that user")
    for job in jobs:
        unit = f"pgbackrest-default-{job}"
        R.check(unit in cfg["services"] and unit in cfg["timers"], w, f"no {unit} service and timer")
        jc = cfg["services"].get(unit, {}).get("serviceConfig", {})
        R.check(jc.get("User") == owner and jc.get("Group") == owner, w, f"{unit} runs as {jc.get('User')}, not {owner}")

    target = b["offsite"]["target"]
    if target is None:
        R.check(upload is None and timer is None, w, "an off-site upload unit without offsite.target")
        return
    if not R.check(upload is not None and timer is not None, w, "offsite.target set, but no valerix-backup-upload unit and timer"):
        return
    sc = upload["serviceConfig"]
    argv = str(sc.get("ExecStart", "")).split()
    R.check(argv[:2] == [f"{package}/bin/valerix", "upload-offsite"], w, f"ExecStart {argv[:2]}")
    flags = dict(zip(argv[2::2], argv[3::2]))
    R.check(flags == {"--repo": b["repository"], "--target": target}, w, f"upload flags {flags}")
    sub_help = subprocess.run([bin_dir() / "valerix", "upload-offsite", "--help"], capture_output=True, text=True)
    R.check(sub_help.returncode == 0, w, "valerix has no subcommand upload-offsite")
    unknown = set(flags) - help_flags(sub_help.stdout)
    R.check(not unknown, w, f"valerix upload-offsite has no {sorted(unknown)}")
    # Exit 3 is the guard refusing a second upload the same day: not a failure.
    R.check("exit 3" in helps["valerix"], w, "valerix --help does not document upload-offsite's exit 3")
    R.check(str(sc.get("SuccessExitStatus", "")).split() == ["3"], w, f"SuccessExitStatus={sc.get('SuccessExitStatus')}")
    user = sc.get("User")
    R.check(user == owner, w, f"the upload runs as {user}, not the repository's owner {owner}")
    rw = sc.get("ReadWritePaths", [])
    # "-": an off-site target that is not mounted must not fail the unit's
    # namespace set-up (226/NAMESPACE) before the upload can say why.
    R.check({b["repository"], f"-{target}"} <= set(rw if isinstance(rw, list) else [rw]), w, f"ReadWritePaths={rw}")
    tc = timer["timerConfig"]
    R.check(tc.get("OnCalendar") == "daily" and tc.get("Persistent") is True, w, f"timer {tc}: want daily, Persistent")
    R.check("timers.target" in timer["wantedBy"], w, "the upload timer is not wanted by timers.target")


def check_database(w: str, cfg: dict, unit: dict, env: dict, creds: dict, nodes) -> None:
    if "DATABASE_URL" in env:
        url = urlparse(env["DATABASE_URL"])
        query = parse_qs(url.query)
        host = query.get("host", [url.hostname or ""])[0]
        if host.startswith("/"):
            pg = cfg["postgresql"]
            R.check(pg["enable"], w, "a local database URL but services.postgresql is off")
            for key in ("after", "wants"):
                R.check("postgresql.target" in unit[key], w, f"{key} lacks postgresql.target (25.11: covers postgresql-setup)")
            # Requires= would take the service down with every stop or restart of PostgreSQL.
            R.check("postgresql.target" not in unit["requires"], w, "requires postgresql.target: a database restart would restart it")
            R.check(host == "/run/postgresql", w, f"socket directory {host}, PostgreSQL's is /run/postgresql")
            dbname, user = url.path.lstrip("/"), query.get("user", [None])[0]
            R.check(dbname in pg["ensureDatabases"], w, f"database {dbname} is not in ensureDatabases")
            R.check(
                any(u["name"] == user and u["ensureDBOwnership"] for u in pg["ensureUsers"]),
                w,
                f"role {user} is not ensured with ensureDBOwnership",
            )
            R.check(unit["serviceConfig"].get("User") == user, w, f"peer authentication: User= must be the role {user}")
        return
    if "DATABASE_URL_FILE" in env:
        for key in ("after", "wants"):
            R.check("network-online.target" in unit[key], w, f"{key} lacks network-online.target (remote database)")
        R.check("postgresql.target" not in unit["requires"], w, "requires a local postgresql.target with a remote database")
        cred = re.search(r"%d/([\w.-]+)", env["DATABASE_URL_FILE"])
        file = described(creds.get(cred.group(1), "")) if cred else None
        if nodes is not None and file and file.get("kind") == "text":
            check_remote_database(w, urlparse(file["text"].strip()), nodes)


def test_addresses(nodes: dict) -> dict[str, tuple[str, str]]:
    """Node addresses as nixpkgs' nixos/lib/testing/network.nix assigns them:
    numbered in attribute-name order from 1, on vlan 1: 192.168.1.N and 2001:db8:1::N."""
    return {name: (f"192.168.1.{i}", f"2001:db8:1::{i}") for i, name in enumerate(sorted(nodes), start=1)}


def check_remote_database(w: str, url, nodes: dict) -> None:
    host, user, dbname = url.hostname, url.username, url.path.lstrip("/")
    if not R.check(host in nodes, w, f"the database host {host} is not a node of the test"):
        return
    db = nodes[host]
    pg = db["postgresql"]
    R.check(pg["enable"] and pg["enableTCPIP"], w, f"{host}: PostgreSQL off or not listening on the network")
    R.check((url.port or 5432) == pg["port"], w, f"port {url.port} is not {host}'s {pg['port']}")
    R.check(pg["port"] in db["firewall"]["allowedTCPPorts"] or not db["firewall"]["enable"], w,
            f"{host}'s firewall does not open {pg['port']}")
    R.check(dbname in pg["ensureDatabases"], w, f"{host} has no database {dbname}")
    R.check(any(u["name"] == user for u in pg["ensureUsers"]), w, f"{host} ensures no role {user}")
    lines = []
    for line in pg["authentication"].splitlines():
        f = line.split("#")[0].split()
        if len(f) >= 5 and f[0] in ("host", "hostssl", "hostnossl"):
            lines.append(f)
    for node, (v4, v6) in sorted(test_addresses(nodes).items()):
        if node == host:
            continue
        for addr in (v4, v6):
            ok = any(
                f[1] in (dbname, "all")
                and f[2] in (user, "all")
                and "/" in f[3]
                and ipaddress.ip_address(addr) in ipaddress.ip_network(f[3], strict=False)
                and f[4] not in ("reject", "trust")
                for f in lines
            )
            R.check(ok, w, f"{host}'s pg_hba has no line admitting {user}@{dbname} from {node} at {addr}")


def check_prometheus(where: str, cfg: dict, pkg: Package, package: str, units: dict, listen_of: dict) -> None:
    prom = cfg["prometheus"]
    if not prom["enable"]:
        return
    w = f"{where} prometheus"
    jobs = {}
    for sc in prom["scrapeConfigs"]:
        targets = [t for s in sc.get("static_configs") or [] for t in s["targets"]]
        jobs[sc["job_name"]] = targets
    want = {}
    for name, unit in units.items():
        binary = unit["environment"].get("OTEL_SERVICE_NAME")
        want[binary] = [connect_target(listen_of[name])]
    R.check(jobs == want, w, f"scrape jobs {jobs} are not the services' listen addresses {want}")
    for rule in prom["ruleFiles"]:
        path = pkg.repo_path(rule, package, f"{w} ruleFiles")
        if path and path.exists():
            R.check(path.is_file() and "groups:" in path.read_text(), w, f"{rule} is not a rule file")
    interval = prom["globalConfig"].get("scrape_interval") or "1m"
    secs = int(re.fullmatch(r"(\d+)s", interval).group(1)) if re.fullmatch(r"\d+s", interval) else 60
    R.check(secs <= 10, w, f"scrape_interval {interval}: the SLA rule's [30s] rate needs one every 10 s or less")


def check_grafana(where: str, cfg: dict, pkg: Package, package: str) -> None:
    graf = cfg["grafana"]
    if not graf["enable"]:
        return
    w = f"{where} grafana"
    prov = graf["provision"]
    R.check(prov["enable"], w, "provision.enable is off")
    uids = set()
    for ds in (prov["datasources"] or {}).get("datasources", []):
        uids.add(ds["uid"])
        if ds["type"] == "prometheus":
            R.check(ds["url"].endswith(f":{cfg['prometheus']['port']}"), w, f"Prometheus datasource {ds['url']} is not Prometheus' port")
    referenced = set()
    for provider in (prov["dashboards"] or {}).get("providers", []):
        path = pkg.repo_path(provider["options"]["path"], package, f"{w} dashboards")
        if path:
            boards = sorted(path.glob("*.json"))
            R.check(bool(boards), w, f"{path} holds no dashboard")
            for b in boards:
                referenced |= set(re.findall(r'"uid":\s*"(valerix-[\w-]+)"', b.read_text()))
    rules = prov["alertingRules"]
    if R.check(rules is not None, w, "no alert rules provisioned"):
        path = pkg.repo_path(rules, package, f"{w} alerting.rules.path")
        if path:
            referenced |= set(re.findall(r"uid:\s*(valerix-[\w-]+)", path.read_text())) - {"valerix-sla-breach"}
    missing = sorted(referenced - uids)
    R.check(not missing, w, f"the dashboards/alert refer to datasource uids {missing} that are not provisioned")
    R.check(graf["settings"]["server"]["http_port"] == 3030, w, "Grafana is not on port 3030 (docs/CONTRACT.md)")


# --------------------------------------------------- defaults and example


def check_defaults(cfg: dict) -> None:
    w = "defaults (services.valerix.enable = true alone)"
    for name, unit in cfg["services"].items():
        env = unit["environment"]
        if "VALERIX_LISTEN" in env:
            host, _ = host_port(env["VALERIX_LISTEN"])
            R.check(is_loopback(host), w, f"{name} listens on {host}, not loopback")
        R.check("VALERIX_GREMLINS" not in env, w, f"{name} has gremlins on")
    R.check(cfg["firewall"]["allowedTCPPorts"] == [], w, f"opens ports {cfg['firewall']['allowedTCPPorts']}")
    R.check(not cfg["prometheus"]["enable"] and not cfg["grafana"]["enable"], w, "Prometheus or Grafana on by default")
    for opt in cfg["valerixOptions"]:
        R.check(bool((opt["description"] or "").strip()), w, f"option {opt['name']} has no description")


def check_example(cfg: dict) -> None:
    w = "nixos/example/host.nix"
    exposed = set()
    for name, unit in cfg["services"].items():
        env = unit["environment"]
        R.check("VALERIX_GREMLINS" not in env, w, f"{name} has gremlins on")
        if "VALERIX_LISTEN" in env:
            host, port = host_port(env["VALERIX_LISTEN"])
            if not is_loopback(host):
                exposed.add(port)
    opened = set(cfg["firewall"]["allowedTCPPorts"])
    R.check(opened <= exposed, w, f"the firewall opens {sorted(opened - exposed)}, where nothing listens beyond loopback")
    R.check(cfg["prometheus"]["listenAddress"] in ("127.0.0.1", "::1"), w, "Prometheus listens beyond loopback")
    R.check(cfg["grafana"]["settings"]["server"]["http_addr"] in ("127.0.0.1", "::1"), w, "Grafana listens beyond loopback")


def check_jaeger(cfg: dict, package: str) -> None:
    """Jaeger runs with the configuration file the package ships: 2.0-2.2
    exit at start without one (their built-in one reads a sampling file
    relative to the working directory; upstream issue 6338)."""
    w = "valerix-jaeger.service"
    unit = cfg["services"].get("valerix-jaeger")
    if not R.check(unit is not None, w, "the example host runs no Jaeger unit"):
        return
    argv = str(unit["serviceConfig"].get("ExecStart", "")).split()
    config = f"--config={package}/share/valerix/grafana/jaeger/valerix.yaml"
    R.check(argv[1:] == [config], w, f"ExecStart {argv}: want {config}")
    text = "".join(
        line for line in (ROOT / "grafana/jaeger/valerix.yaml").read_text().splitlines(keepends=True)
        if not line.lstrip().startswith("#")
    )
    R.check("remote_sampling" not in text and "sampling-strategies" not in text, w,
            "grafana/jaeger/valerix.yaml reads a sampling strategies file")


# ---------------------------------------------------------- app and shell


def bins_of(packages: list[dict]) -> set[str]:
    return {b for p in packages for b in p["bins"]}


def check_app(app: dict, pkg: Package, package_path: str, has_jaeger: bool) -> None:
    w = "apps.default (nix run)"
    R.check(app.get("type", "app") == "app", w, "not of type app")
    script = described(app["program"])
    if not R.check(script is not None and app["program"].endswith(f"/bin/{script['name']}"), w,
                   f"program {app['program'][:80]}... is not the wrapper script's bin/"):
        return
    path = bins_of(script["runtimeInputs"])
    observe = (ROOT / "services/tools/valerix/src/observe.rs").read_text()
    # `valerix up` starts each tool it finds on PATH (observe.rs: on_path; one
    # name of a line suffices) and PostgreSQL from initdb/postgres (devdb).
    needed = [set(re.findall(r'on_path\("([\w-]+)"\)', line)) for line in observe.splitlines() if "on_path(\"" in line]
    needed += [{"initdb"}, {"postgres"}, {"valerix"}, {"pgbackrest"}]
    for alternatives in needed:
        if alternatives == {"jaeger"} and not has_jaeger:
            continue
        R.check(bool(alternatives & path), w, f"none of {sorted(alternatives)} is in the app's runtimeInputs")
    for cmd in shell.commands(script["text"]):
        word = cmd.words[0]
        R.check(word in shell.BUILTINS or word in path or word.startswith("$"), w, f"runs {word}, not in its runtimeInputs")
    ui = re.search(r"VALERIX_UI_DIR=(\S+)", script["text"])
    if R.check(ui is not None, w, "does not set VALERIX_UI_DIR"):
        pkg.repo_path(ui.group(1), package_path, w)



def check_devshell(shell_ev: dict) -> None:
    w = "devShells.default"
    path = bins_of(shell_ev["packages"])
    # What `just lint`, `just test` and `just up` call (justfile, .ci/run).
    for tool in ["cargo", "rustc", "cargo-clippy", "rustfmt", "just", "initdb", "postgres", "prometheus",
                 "promtool", "grafana", "node", "npm", "chromium", "nixfmt", "deadnix", "python3"]:
        R.check(tool in path, w, f"{tool} is not provided")


# ------------------------------------------------------------ VM tests


def string_value(node: ast.AST, strings: dict[str, str]) -> str | None:
    """The text of a string expression; f-string holes and unknown names become X."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(v.value)
            elif isinstance(v.value, ast.Name) and v.value.id in strings:
                parts.append(strings[v.value.id])
            else:
                parts.append("X")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = string_value(node.left, strings), string_value(node.right, strings)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        return strings.get(node.id, "X")
    return None


def undefined_names(tree: ast.Module, nodes: set[str]) -> set[str]:
    import builtins

    defined = set(dir(builtins)) | DRIVER_GLOBALS | nodes
    if len(nodes) == 1:
        defined.add("machine")
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            defined.add(n.name)
            defined |= {a.arg for a in n.args.args} if isinstance(n, ast.FunctionDef) else set()
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            defined.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.arg):
            defined.add(n.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def check_commands(w: str, text: str, node: str, cfg: dict, path: set[str]) -> None:
    """Every command of a shell snippet run on `node`: on PATH, its user there, its flags known."""
    try:
        cmds = shell.commands(text)
    except (ValueError, IndexError) as e:
        R.error(w, f"cannot read the shell command {text!r}: {e}")
        return
    for cmd in cmds:
        word = cmd.words[0]
        if word.startswith("$") or word in shell.BUILTINS:
            continue
        R.check(word in path, w, f"{word!r} is not on {node}'s PATH (in: {text.strip()[:90]!r})")
        if cmd.user is not None:
            R.check(cmd.user in cfg["users"], w, f"runs as {cmd.user}, not a user on {node}")
        if word == "valerix":
            args = cmd.words[1:]
            sub = next((a for a in args if not a.startswith("-")), None)
            flags = {a.split("=")[0] for a in args if a.startswith("--")}
            if sub:
                sub_help = subprocess.run([bin_dir() / "valerix", sub, "--help"], capture_output=True, text=True)
                R.check(sub_help.returncode == 0, w, f"valerix has no subcommand {sub}")
                unknown = flags - help_flags(sub_help.stdout)
                R.check(not unknown, w, f"valerix {sub} has no {sorted(unknown)}")


def listened_ports(cfg: dict) -> set[int]:
    ports = set()
    for unit in cfg["services"].values():
        if "VALERIX_LISTEN" in unit["environment"]:
            ports.add(host_port(unit["environment"]["VALERIX_LISTEN"])[1])
    if "valerix-jaeger" in cfg["services"]:
        ports |= JAEGER_PORTS
    if cfg["prometheus"]["enable"]:
        ports.add(cfg["prometheus"]["port"])
    if cfg["grafana"]["enable"]:
        ports.add(cfg["grafana"]["settings"]["server"]["http_port"])
    if cfg["postgresql"]["enable"]:
        ports.add(cfg["postgresql"]["port"])
    return ports


def check_test(name: str, test: dict) -> None:
    nodes = test["nodes"]
    w = f"{name} testScript"
    try:
        tree = ast.parse(compile(test["testScript"], name, "exec", ast.PyCF_ONLY_AST))
    except SyntaxError as e:
        R.error(w, f"does not compile: {e}")
        return
    compile(test["testScript"], name, "exec")
    undefined = undefined_names(tree, set(nodes))
    R.check(not undefined, w, f"undefined names {sorted(undefined)}")

    strings: dict[str, str] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            v = string_value(n.value, strings)
            if v is not None:
                strings[n.targets[0].id] = v

    aliases = {"machine": next(iter(nodes))} if len(nodes) == 1 else {}
    paths = {}
    for node, cfg in nodes.items():
        paths[node] = bins_of(cfg["systemPackages"])
        for helper in (p for p in cfg["systemPackages"] if p.get("kind") == "shellApplication"):
            check_commands(
                f"{name}.{node} helper {helper['name']}",
                helper["text"],
                node,
                cfg,
                paths[node] | bins_of(helper["runtimeInputs"]),
            )

    checked = 0
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        recv = call.func.value
        if not isinstance(recv, ast.Name):
            continue
        node = aliases.get(recv.id, recv.id)
        if node not in nodes:
            continue
        cfg, method = nodes[node], call.func.attr
        where = f"{name} line {call.lineno} {recv.id}.{method}"
        args = [string_value(a, strings) for a in call.args]
        if method in SHELL_METHODS:
            for a in args:
                if a is None:
                    R.error(where, "a command that is not a string expression")
                    continue
                check_commands(where, a, node, cfg, paths[node])
                checked += 1
        elif method == "systemctl" and args and args[0]:
            check_commands(where, "systemctl " + args[0], node, cfg, paths[node])
        elif method in ("wait_for_unit", "require_unit_state", "get_unit_property", "get_unit_info", "start_job", "stop_job"):
            unit = args[0] if args else None
            if unit and "X" not in unit:
                base, _, kind = unit.rpartition(".") if unit.endswith((".service", ".target")) else (unit, "", "service")
                table = cfg["targets"] if kind == "target" else cfg["services"]
                R.check(base in table, where, f"{unit}: no such unit on {node}")
        elif method == "wait_for_open_port":
            port = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
            if port is not None:
                R.check(port in listened_ports(cfg), where, f"nothing on {node} is configured to listen on {port}")
    # `for unit in units: machine.wait_for_unit(f"{unit}.service")` and
    # `for port in [...]: machine.wait_for_open_port(port)`: the loop's literal
    # list (or the list its name was assigned) holds the units and ports.
    lists = {
        t.id: n.value.elts
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For):
            continue
        items = loop.iter.elts if isinstance(loop.iter, ast.List) else lists.get(getattr(loop.iter, "id", None), [])
        values = [i.value for i in items if isinstance(i, ast.Constant)]
        for call in ast.walk(loop):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Name)):
                continue
            node = aliases.get(call.func.value.id, call.func.value.id)
            if node not in nodes:
                continue
            where = f"{name} line {call.lineno}"
            if call.func.attr == "wait_for_unit":
                for unit in (v for v in values if isinstance(v, str)):
                    R.check(unit.removesuffix(".service") in nodes[node]["services"], where,
                            f"{unit}: no such unit on {node}")
            elif call.func.attr == "wait_for_open_port":
                for port in (v for v in values if isinstance(v, int)):
                    R.check(port in listened_ports(nodes[node]), where,
                            f"nothing on {node} is configured to listen on {port}")
    R.notes.append(f"{name}: testScript compiles, {checked} shell commands in {len(nodes)} node(s) checked")


# ------------------------------------------------------------------ main


def main() -> int:
    if shutil.which("nix-instantiate") is None:
        msg = "nix-instantiate not found (Debian: apt-get install nix-bin): the Nix evaluation is skipped"
        if os.environ.get("CI") == "true":
            print(f"nixos/eval/check.py: {msg}, which CI=true does not allow", file=sys.stderr)
            return 1
        print(f"nixos/eval/check.py: {msg}")
        return 0

    bins = workspace_binaries()
    helps = binaries_help(bins)
    runtime = runtime_envs()
    ev = evaluate(bins)

    pkg_ev = ev["package"]
    pkg = Package(pkg_ev)
    R.check(pkg_ev["dontUseCargoParallelTests"], "flake.nix package", "test threads unbounded (dontUseCargoParallelTests)")
    # The build copies share/valerix from its src and the Rust code reads files
    # beside the crates: each must be in the package's lib.fileset.
    included = {k for k, v in pkg_ev["srcIncludes"].items() if v}
    for entry in sorted(set(pkg.share_dirs) | files_the_build_reads() | {"Cargo.toml", "Cargo.lock", "services"}):
        R.check(entry in included, "flake.nix package src", f"{entry} is read by the build but not in its fileset")
    has_jaeger = "jaeger" in ev["jaeger"]["bins"]
    R.check(has_jaeger, "flake.nix jaeger", "the Jaeger package installs no bin/jaeger")

    configs = ev["configurations"]
    package_path = configs["defaults"]["valerix"]["package"]
    for where, cfg in configs.items():
        check_host(where, cfg, pkg, helps, runtime)
    check_defaults(configs["defaults"])
    check_example(configs["example"])
    check_example(configs["fragment-in-host"])
    # nixos/example/valerix.nix goes into an existing host: the host's own
    # settings stay as that host set them.
    R.check(ev["fragmentHostSettings"] == {
        "hostPlatform": "aarch64-linux", "stateVersion": "24.11", "grubDevice": "/dev/vda",
        "root": {"device": "/dev/vda1", "fsType": "xfs"},
    }, "nixos/example/valerix.nix", f"changes the host's own settings: {ev['fragmentHostSettings']}")
    # What nixpkgs refuses, the stand-ins refuse too.
    R.check(not ev["strictControl"], "nixos/eval/eval.nix", "refusedBy refuses a plain host: its cases prove nothing")
    for case, refused in ev["strict"].items():
        R.check(refused, "nixos/eval/stubs.nix", f"accepts what nixpkgs refuses: {case}")
    check_jaeger(configs["example"], package_path)
    # inventory and payment on another host, no shared token given: a token
    # generated on each host would never match.
    refused = ev["refused"]["split-without-service-token"]
    R.check(any("serviceTokenFile" in m for m in refused), "split without serviceTokenFile",
            f"not refused (failed assertions: {refused})")
    # database.ha combinations the module must refuse, each with its own message.
    for case, needle in {
        "ha-with-local-postgresql": "database.ha replaces the single PostgreSQL",
        "ha-with-url-file": "database.ha replaces the single PostgreSQL",
        "ha-with-backup": "with database.ha the module sets up no backups",
        "ha-two-nodes": "at least three are needed",
        "ha-unknown-node-name": "is not one of database.ha.nodes",
        "ha-ipv6-node": "give each node an IPv4 address",
        "ha-without-password": "passwordFile is not set",
        "ha-node-without-superuser-password": "needs superuserPasswordFile and replicationPasswordFile",
        "ha-password-in-store": "must not be in the Nix store",
    }.items():
        refused = ev["refused"][case]
        R.check(any(needle in m for m in refused), f"database.ha refused case {case}",
                f"not refused with {needle!r} (failed assertions: {refused})")
    check_app(ev["app"], pkg, package_path, has_jaeger)
    check_devshell(ev["devShell"])
    for name, test in ev["tests"].items():
        for node, cfg in test["nodes"].items():
            check_host(f"{name}.{node}", cfg, pkg, helps, runtime, test["nodes"])
        check_test(name, test)

    units = sum(len(service_units(c, package_path)) for c in configs.values()) + sum(
        len(service_units(c, package_path)) for t in ev["tests"].values() for c in t["nodes"].values()
    )
    for note in R.notes:
        print(note)
    sys.stdout.flush()
    if R.errors:
        print(f"nixos/eval/check.py: {len(R.errors)} problem(s):", file=sys.stderr)
        for e in R.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    hosts = len(configs) + sum(len(t["nodes"]) for t in ev["tests"].values())
    print(f"nixos/eval/check.py: {hosts} configurations evaluated, {units} service units match the binaries; no problem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
