#!/usr/bin/env python3
"""Every environment variable nixos/module.nix sets for a service is one the
services read: an `env = "NAME"` of a clap flag in services/*/src/config.rs or
services/lib/runtime/src/config.rs, or a variable the runtime's telemetry reads
itself (OTEL_*, RUST_LOG), or tokio's TOKIO_WORKER_THREADS. A name the binaries do not know would be ignored
silently and the unit would run on a default; Nix cannot run here, so this
reads the files as text. Run from anywhere: nixos/check-module-env.py
"""

import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
module = (root / "nixos/module.nix").read_text()

start = module.index("serviceEnvironment =")
end = module.index("mkServiceUnit =", start)
set_by_module = set(re.findall(r"\b([A-Z][A-Z0-9_]*[A-Z0-9]) = ", module[start:end]))

configs = sorted(root.glob("services/*/src/config.rs"))
clap_envs = set()
for path in configs:
    clap_envs |= set(re.findall(r'env = "([A-Z0-9_]+)"', path.read_text()))

# Read by the runtime outside clap (services/lib/runtime/src/{otel,telemetry}.rs).
runtime = "\n".join(
    (root / "services/lib/runtime/src" / f).read_text() for f in ("otel.rs", "telemetry.rs")
)
sdk = {name for name in set_by_module - clap_envs if name in runtime}
# Read by tokio's multi-threaded runtime builder (#[tokio::main]).
sdk |= set_by_module & {"TOKIO_WORKER_THREADS"}

unknown = sorted(set_by_module - clap_envs - sdk)
if not set_by_module or unknown:
    sys.exit(
        f"nixos/module.nix sets variables no service reads: {unknown or 'none found at all'}"
        f" (flags' env names: {sorted(clap_envs)})"
    )
print(
    f"nixos/module.nix: {len(set_by_module)} variables, each read by the services"
    f" ({len(set_by_module) - len(sdk)} clap flags, {len(sdk)} by the runtime: {', '.join(sorted(sdk))})"
)
