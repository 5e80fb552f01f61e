"""The NixOS test driver's `Machine`, for a booted systemd-nspawn container.

The methods the VM tests' scripts call, with the semantics of nixpkgs'
nixos/lib/test-driver/src/test_driver/machine.py (nixos-25.11): commands run
under `bash -c` with `set -euo pipefail`; `succeed` raises on a non-zero
status and returns the output; `wait_for_unit` fails as soon as the unit is
`failed`, or `inactive` with no job pending; `wait_until_succeeds` retries
once a second until its timeout. The commands reach the container with
`nsenter` into all of its namespaces (the host's PID 1 is not systemd, so
there is no machined to ask).

What the twin does not have (Grafana, Jaeger: no Debian package) is named in
`absent`: a step that needs it raises `Skipped`, and the subtest around it is
reported as skipped, with that step, never as passed.
"""

from __future__ import annotations

import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

PATH = "/run/wrappers/bin:/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"


class Skipped(Exception):
    """A step needs what the twin does not have."""


@dataclass
class Absent:
    """What the twin lacks, and why."""

    units: dict[str, str] = field(default_factory=dict)
    ports: dict[int, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def check_unit(self, unit: str) -> None:
        name = unit if "." in unit else f"{unit}.service"
        if name in self.units:
            raise Skipped(f"{name}: {self.units[name]}")

    def check_port(self, port: int) -> None:
        if port in self.ports:
            raise Skipped(f"port {port}: {self.ports[port]}")

    def check_command(self, command: str) -> None:
        for word, why in self.commands.items():
            if re.search(rf"(^|[\s;|&(]){re.escape(word)}", command):
                raise Skipped(f"`{word}`: {why}")
        for unit, why in self.units.items():
            if unit in command:
                raise Skipped(f"{unit}: {why}")


@dataclass
class Outcome:
    name: str
    status: str  # passed, failed, skipped
    detail: str = ""
    seconds: float = 0.0


class Machine:
    def __init__(self, name: str, pid: int, absent: Absent, log) -> None:
        self.name = name
        self.pid = pid
        self.absent = absent
        self._log = log

    # -- running commands

    def _run(self, command: str, timeout: float | None) -> tuple[int, str]:
        argv = [
            "nsenter", "-t", str(self.pid), "-a", "--",
            "env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
            "bash", "-c", f"set -euo pipefail; {command}",
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, out
        if done.stderr.strip():
            self._log(f"    ({self.name}) stderr of `{command[:80]}`: {done.stderr.strip()[:2000]}")
        return done.returncode, done.stdout

    def execute(self, command: str, check_return: bool = True, check_output: bool = True, timeout: int | None = 900) -> tuple[int, str]:
        self.absent.check_command(command)
        return self._run(command, timeout)

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            self.log(f"must succeed: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                raise AssertionError(f"command `{command}` failed (exit code {status}):\n{out}")
            output += out
        return output

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            self.log(f"must fail: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise AssertionError(f"command `{command}` unexpectedly succeeded:\n{out}")
            output += out
        return output

    def _retry(self, what: str, ok, timeout: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if ok():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s: {what}")
            time.sleep(1)

    def _wait_until(self, command: str, succeeds: bool, timeout: int) -> str:
        self.log(f"wait until {'succeeds' if succeeds else 'fails'}: {command}")
        self.absent.check_command(command)
        result = {}

        def ok() -> bool:
            status, out = self._run(command, timeout=60)
            result["out"] = out
            return (status == 0) == succeeds

        self._retry(f"`{command}` never {'succeeded' if succeeds else 'failed'}", ok, timeout)
        return result["out"]

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        return self._wait_until(command, True, timeout)

    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        return self._wait_until(command, False, timeout)

    # -- systemd

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        assert user is None, "user units are not used by these tests"
        return self.execute(f"systemctl {q}")

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        self.absent.check_unit(unit)
        status, out = self._run(f"systemctl --no-pager show '{unit}'", timeout=60)
        if status != 0:
            raise AssertionError(f"retrieving systemctl info for unit '{unit}' failed with exit code {status}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        self.absent.check_unit(unit)
        status, out = self._run(f"systemctl --no-pager show --property='{property}' --value '{unit}'", timeout=60)
        if status != 0:
            raise AssertionError(f"retrieving systemctl property '{property}' for unit '{unit}' failed")
        return out.rstrip("\n")

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        state = self.get_unit_info(unit)["ActiveState"]
        if state != require_state:
            raise AssertionError(f"Expected unit '{unit}' to to be in state '{require_state}' but it is in state '{state}'")

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        self.log(f"waiting for unit {unit}")
        self.absent.check_unit(unit)

        def ok() -> bool:
            info = self.get_unit_info(unit)
            state = info["ActiveState"]
            if state == "failed":
                raise AssertionError(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                status, jobs = self._run("systemctl list-jobs --full 2>&1", timeout=60)
                if "No jobs" in jobs:
                    info = self.get_unit_info(unit)
                    if info["ActiveState"] == state:
                        raise AssertionError(f'unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"

        self._retry(f"unit {unit} never became active", ok, timeout)

    def start_job(self, unit: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"start {unit}")

    def stop_job(self, unit: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"stop {unit}")

    def wait_for_file(self, filename: str, timeout: int = 900) -> None:
        self.log(f"waiting for file {filename}")
        self._retry(f"file {filename} never appeared", lambda: self._run(f"test -e '{filename}'", timeout=60)[0] == 0, timeout)

    # -- network

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None:
        self.log(f"waiting for TCP port {port} on {addr}")
        self.absent.check_port(port)
        probe = f"exec 3<>/dev/tcp/{addr}/{port}"
        self._retry(f"port {port} on {addr} never opened", lambda: self._run(probe, timeout=10)[0] == 0, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None:
        probe = f"exec 3<>/dev/tcp/{addr}/{port}"
        self._retry(f"port {port} on {addr} never closed", lambda: self._run(probe, timeout=10)[0] != 0, timeout)

    # -- the rest of the driver's surface these scripts touch

    def sleep(self, secs: int) -> None:
        time.sleep(secs)

    def log(self, msg: str) -> None:
        self._log(f"  {self.name}: {msg}")

    def start(self, allow_reboot: bool = False) -> None:
        pass  # booted before the script runs

    def wait_for_shutdown(self) -> None:
        raise Skipped("the twin does not reboot its container within a script")

    def shutdown(self) -> None:
        raise Skipped("the twin does not reboot its container within a script")

    def crash(self) -> None:
        raise Skipped("the twin does not reboot its container within a script")


class Run:
    """The globals a testScript sees, and the subtests' outcomes."""

    def __init__(self, machines: dict[str, Machine], log) -> None:
        self.machines = machines
        self.outcomes: list[Outcome] = []
        self._log = log

    @contextmanager
    def subtest(self, name: str):
        self._log(f"subtest: {name}")
        started = time.monotonic()
        try:
            yield
        except Skipped as why:
            self.outcomes.append(Outcome(name, "skipped", str(why), time.monotonic() - started))
            self._log(f"  SKIPPED: {name} ({why})")
            return
        except Exception as err:
            self.outcomes.append(Outcome(name, "failed", f"{type(err).__name__}: {err}", time.monotonic() - started))
            self._log(f"  FAILED: {name}: {err}")
            raise
        self.outcomes.append(Outcome(name, "passed", "", time.monotonic() - started))
        self._log(f"  passed: {name} ({time.monotonic() - started:.1f} s)")

    def globals(self) -> dict:
        g = {
            "start_all": lambda: None,
            "subtest": self.subtest,
            "machines": list(self.machines.values()),
            "log": type("Log", (), {"info": staticmethod(self._log)})(),
        }
        g.update(self.machines)
        if len(self.machines) == 1:
            g["machine"] = next(iter(self.machines.values()))
        return g

    def execute(self, name: str, script: str) -> None:
        code = compile(script, f"<testScript of {name}>", "exec")
        try:
            exec(code, self.globals())
        except Skipped as why:
            # A step outside any subtest: the rest of the script cannot run.
            self.outcomes.append(Outcome("(outside a subtest)", "skipped", str(why)))
