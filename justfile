# Thin names for the real commands (each recipe is one line you can run by hand).

# The whole stack on localhost (throwaway PostgreSQL, services, demo data)
up *args:
    cargo run -p valerix -- up {{args}}

# Every test, on real PostgreSQL and real HTTP
test:
    cargo test --workspace

# Drive load at the running stack and print what happened
load *args:
    cargo run --release -p valerix -- load {{args}}

# Database-only bound vs end-to-end, the ratio table
bench *args:
    cargo run --release -p valerix -- bench {{args}}

# The fault schedule with the cure off and on
chaos *args:
    cargo run -p valerix -- chaos {{args}}

# Lose the database's primary under load (needs patroni, etcd, haproxy)
drill-failover *args:
    cargo run --release -p valerix -- drill failover {{args}}

# Regenerate the committed OpenAPI specs
openapi:
    cargo run -p valerix -- openapi --out openapi

# nixfmt, deadnix, cargo-machete: `cargo install --locked nixfmt_rs@0.5.3 deadnix@1.3.1 cargo-machete@0.9.2` (what .ci/run installs);
# the evaluation needs nix-instantiate (Debian: nix-bin) and says so when it is missing
# Formatting, lints, Nix parse/format/dead code and evaluation, Prometheus rules
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo machete
    for f in $(git ls-files '*.nix'); do nix-instantiate --parse "$f" > /dev/null; done
    nixfmt --check $(git ls-files '*.nix' ':!:nixos/vendor/')
    deadnix --fail $(git ls-files '*.nix' ':!:nixos/vendor/')
    nixos/eval/check.py
    grafana/check.sh

# The NixOS module's units run by a real systemd: stack.nix's testScript in systemd-nspawn (root; see nixos/README.md)
twin *args:
    cargo build --release --locked -p order-service -p inventory-service -p payment-service -p api-gateway -p valerix
    nixos/twin/twin.py {{args}}

# database.ha's VM test (nixos/tests/ha.nix) in four containers of the systemd twin (as root)
twin-ha *args:
    cargo build --release --locked -p order-service -p inventory-service -p payment-service -p api-gateway -p valerix
    nixos/twin/ha.py {{args}}

# The NixOS VM tests and everything else Nix checks (needs Nix with KVM)
vm:
    nix flake check
