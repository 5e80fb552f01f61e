"""Unit files from an evaluated NixOS configuration, as NixOS writes them.

The rules are those of nixpkgs' nixos/lib/systemd-lib.nix (nixos-25.11):

- `attrsToSection`: one `Name=value` line per setting; a list is the same
  setting repeated, one line per element; `true`/`false` are written as such,
  anything else with `toString` (so a number is its decimal form).
- `serviceToUnit`: `[Service]` starts with one `Environment=` line per
  variable, `Environment=${builtins.toJSON "NAME=value"}` (a JSON string, so a
  value with spaces, quotes or backslashes stays one assignment), then the
  `serviceConfig` section. Values are not escaped otherwise: `%d`, `$VAR` and
  quotes in `ExecStart=` reach systemd as written, which is what the module
  relies on (`%d/<id>` for credentials).
- nixos/lib/systemd-unit-options.nix: `description`, `requires`, `wants`,
  `after`, `before`, `bindsTo`, `partOf`, `conflicts` become `[Unit]` settings
  (the lists space-separated with `toString`); `wantedBy`/`requiredBy` are not
  settings but links in `<target>.wants/` and `<target>.requires/`.
- nixos/modules/system/boot/systemd.nix: `script`, `preStart`, `postStart`
  become job scripts (`makeJobScript`: `#!${runtimeShell} -e` and the text)
  run by `ExecStart=`, `ExecStartPre=`, `ExecStartPost=`; `path` becomes the
  unit's `PATH` (its packages' bin/ and sbin/, after coreutils, findutils,
  gnugrep, gnused and systemd).

Nix store paths are kept as they are: the twin puts a real file at each one
(`Store.put`, `Store.described`), so a unit reads exactly as NixOS would generate it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath

EVAL_MARK = "/nix/store/eval:"



def to_option(value) -> str:
    """systemd-lib.nix `toOption`."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def attrs_to_section(settings: dict) -> str:
    """systemd-lib.nix `attrsToSection` (attribute names in Nix's sorted order)."""
    out = []
    for name in sorted(settings):
        value = settings[name]
        for item in value if isinstance(value, list) else [value]:
            out.append(f"{name}={to_option(item)}\n")
    return "".join(out)


def nix_to_json_string(text: str) -> str:
    """`builtins.toJSON` of a string: JSON escapes, `/` and non-ASCII as they are."""
    return json.dumps(text, ensure_ascii=False)


@dataclass
class JobScript:
    path: str
    text: str


@dataclass
class Unit:
    name: str
    text: str
    wanted_by: list[str] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)
    scripts: list[JobScript] = field(default_factory=list)


def unit_section(unit: dict) -> dict:
    section: dict = {}
    if unit.get("description"):
        section["Description"] = unit["description"]
    for opt, key in [
        ("requires", "Requires"),
        ("wants", "Wants"),
        ("after", "After"),
        ("before", "Before"),
        ("bindsTo", "BindsTo"),
        ("partOf", "PartOf"),
        ("conflicts", "Conflicts"),
    ]:
        if unit.get(opt):
            section[key] = " ".join(unit[opt])
    section.update(unit.get("unitConfig") or {})
    return section


def job_script_path(unit: str, kind: str, text: str) -> str:
    digest = hashlib.sha256(f"{unit}-{kind}\n{text}".encode()).hexdigest()[:32]
    return f"/nix/store/{digest}-unit-script-{unit}-{kind}/bin/{unit}-{kind}"


# nixos/modules/system/boot/systemd.nix: the default `path` of every unit.
DEFAULT_PATH = ["coreutils", "findutils", "gnugrep", "gnused", "systemd"]


def service(name: str, unit: dict, runtime_shell: str, path_of) -> Unit:
    """One `systemd.services.<name>` as `<name>.service`.

    `path_of(entry)` gives the bin/ directories of one `path` entry (a store path
    or a package name) on the twin."""
    config = dict(unit.get("serviceConfig") or {})
    scripts = []
    for kind, option, setting in [
        ("start", "script", "ExecStart"),
        ("pre-start", "preStart", "ExecStartPre"),
        ("post-start", "postStart", "ExecStartPost"),
    ]:
        text = unit.get(option) or ""
        if not text:
            continue
        path = job_script_path(name, kind, text)
        scripts.append(JobScript(path, f"#!{runtime_shell} -e\n{text}"))
        # The stand-in's placeholder (nixos/eval/stubs.nix: serviceModule) becomes
        # the script's store path, as makeJobScript's output is on NixOS.
        stub = f"/nix/store/{name}-{kind}"
        value = config[setting]
        if isinstance(value, list):
            config[setting] = [v.replace(stub, path, 1) for v in value]
        else:
            config[setting] = value.replace(stub, path, 1)
    env = dict(unit.get("environment") or {})
    if "PATH" not in env:
        dirs = []
        for entry in DEFAULT_PATH + list(unit.get("path") or []):
            dirs.extend(path_of(entry))
        env["PATH"] = ":".join(dict.fromkeys(dirs))
    text = "[Unit]\n" + attrs_to_section(unit_section(unit)) + "\n[Service]\n"
    for var in sorted(env):
        if env[var] is not None:
            text += f"Environment={nix_to_json_string(f'{var}={env[var]}')}\n"
    text += attrs_to_section(config)
    return Unit(
        f"{name}.service",
        text,
        wanted_by=list(unit.get("wantedBy") or []),
        required_by=list(unit.get("requiredBy") or []),
        scripts=scripts,
    )


def timer(name: str, unit: dict) -> Unit:
    text = "[Unit]\n" + attrs_to_section(unit_section(unit))
    text += "\n[Timer]\n" + attrs_to_section(unit.get("timerConfig") or {})
    return Unit(f"{name}.timer", text, wanted_by=list(unit.get("wantedBy") or []))


def socket(name: str, unit: dict) -> Unit:
    text = "[Unit]\n" + attrs_to_section(unit_section(unit))
    text += "\n[Socket]\n" + attrs_to_section(unit.get("socketConfig") or {})
    text += "".join(f"ListenStream={s}\n" for s in unit.get("listenStreams") or [])
    return Unit(f"{name}.socket", text, wanted_by=list(unit.get("wantedBy") or []))


def target(name: str, unit: dict) -> Unit:
    text = "[Unit]\n" + attrs_to_section(unit_section(unit))
    return Unit(f"{name}.target", text, wanted_by=list(unit.get("wantedBy") or []))


def entry_of(path: str) -> str:
    """/nix/store/<hash>-<name>/bin/x -> /nix/store/<hash>-<name>."""
    parts = PurePosixPath(path).parts
    return str(PurePosixPath(*parts[:4]))
