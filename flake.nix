{
  description = "Valerix: order, inventory and payment services behind an API gateway, on one PostgreSQL";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAll = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The whole Cargo workspace: every binary lands in $out/bin (order-service,
      # inventory-service, payment-service, api-gateway, valerix), the static
      # files in $out/share/valerix.
      valerixFor =
        pkgs:
        pkgs.rustPlatform.buildRustPackage {
          pname = "valerix";
          inherit ((lib.importTOML ./Cargo.toml).workspace.package) version;

          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./services
              ./migrations
              ./ui
              ./grafana
              # tests/contract.rs checks docs/CONTRACT.md against the binaries
              ./docs
              (lib.fileset.maybeMissing ./openapi)
              (lib.fileset.maybeMissing ./.sqlx)
            ];
          };
          cargoLock.lockFile = ./Cargo.lock;

          # sqlx query macros read the committed .sqlx/ data, never a database.
          env.SQLX_OFFLINE = "true";

          # The tests start their own throwaway PostgreSQL cluster (valerix-devdb runs
          # initdb and postgres from PATH); prometheus/promtool for the tests that
          # use them (`valerix up` starts Prometheus when it is on PATH).
          nativeCheckInputs = [
            pkgs.postgresql
            pkgs.prometheus
            pkgs.prometheus.cli
          ];
          preCheck = ''
            export HOME=$TMPDIR
          '';
          # cargoCheckHook (pkgs/build-support/rust/hooks/cargo-check-hook.sh) runs
          # each test binary with --test-threads=$NIX_BUILD_CORES unless this is set,
          # then with 1. The tests have only ever run on 2 CPUs with 2 threads; on a
          # 32-core builder 32 at once would each start services with database pools
          # (up to 16 connections) against one throwaway PostgreSQL, and the
          # timing-sensitive ones (chaos, gremlins, the SLA alert) would share the
          # CPUs with 31 others. One thread never sees more contention than tested.
          # (A second --test-threads in checkFlags is refused by libtest.)
          dontUseCargoParallelTests = true;

          # Read at run time: ui/ by the gateway (--ui-dir, VALERIX_UI_DIR; the
          # browser tests and npm files stay behind) and grafana/ by the NixOS
          # module (Prometheus rule file, Grafana dashboard and alert).
          # migrations/ is compiled into the binaries (sqlx::migrate!); this
          # copy is for reading only.
          postInstall = ''
            mkdir -p $out/share/valerix
            cp -r ui grafana migrations $out/share/valerix/
            rm -rf $out/share/valerix/ui/{tests,package.json,package-lock.json,node_modules}
            # The CLI as the integration tests build it (services/tests); `valerix` is the same code.
            rm -f $out/bin/valerix-under-test
          '';

          meta = {
            description = "Valerix services, API gateway and the valerix CLI";
            license = lib.licenses.mit;
            mainProgram = "valerix";
            platforms = lib.platforms.linux;
          };
        };

      # nixpkgs 25.11 has no Jaeger: the upstream v2 release binary (static Go).
      jaegerFor =
        pkgs:
        pkgs.stdenvNoCC.mkDerivation {
          pname = "jaeger";
          version = "2.0.0";
          src = pkgs.fetchurl {
            url = "https://github.com/jaegertracing/jaeger/releases/download/v1.63.0/jaeger-2.0.0-linux-amd64.tar.gz";
            sha256 = "d2782c1a240bc2601d6cc74d181c7919e715f2d779111dbb167ec2cd9f8d2a2b";
          };
          dontStrip = true;
          installPhase = ''
            runHook preInstall
            install -Dm755 jaeger $out/bin/jaeger
            runHook postInstall
          '';
          meta = {
            description = "Jaeger distributed tracing, all-in-one (upstream release binary)";
            homepage = "https://www.jaegertracing.io";
            license = lib.licenses.asl20;
            mainProgram = "jaeger";
            platforms = [ "x86_64-linux" ];
            sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
          };
        };

      isX86 = pkgs: pkgs.stdenv.hostPlatform.system == "x86_64-linux";
      packagesOf = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system};
      jaegerOf = pkgs: lib.optional (isX86 pkgs) (packagesOf pkgs).jaeger;
    in
    {
      packages = forAll (
        pkgs:
        let
          valerix = valerixFor pkgs;
        in
        {
          inherit valerix;
          default = valerix;
        }
        // lib.optionalAttrs (isX86 pkgs) { jaeger = jaegerFor pkgs; }
      );

      # `nix run`: the whole stack on localhost via `valerix up`.
      apps = forAll (
        pkgs:
        let
          inherit (packagesOf pkgs) valerix;
          up = pkgs.writeShellApplication {
            name = "valerix-up";
            runtimeInputs = [
              valerix
              pkgs.postgresql
              # `valerix up --backup-dir`, `valerix backup`, `valerix restore`.
              pkgs.pgbackrest
              pkgs.prometheus
              pkgs.prometheus.cli
              pkgs.grafana
            ]
            ++ jaegerOf pkgs;
            text = ''
              export VALERIX_UI_DIR=${valerix}/share/valerix/ui
              exec valerix up "$@"
            '';
          };
        in
        {
          default = {
            type = "app";
            program = "${up}/bin/valerix-up";
            meta.description = "Run the Valerix stack on localhost with PostgreSQL, Prometheus, Grafana and Jaeger";
          };
        }
      );

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.sqlx-cli
            pkgs.just
            pkgs.postgresql
            pkgs.pgbackrest
            pkgs.prometheus
            pkgs.prometheus.cli
            pkgs.grafana
            pkgs.nodejs
            pkgs.chromium
            pkgs.nixfmt
            pkgs.deadnix
            # nixos/eval/check.py and grafana/check.sh (`just lint`)
            pkgs.python3
          ]
          ++ jaegerOf pkgs;
        };
      });

      # The module with its package defaults taken from this flake.
      nixosModules.default =
        { pkgs, ... }:
        let
          packages = packagesOf pkgs;
        in
        {
          imports = [ ./nixos/module.nix ];
          services.valerix.package = lib.mkDefault packages.valerix;
          services.valerix.jaeger.package = lib.mkIf (packages ? jaeger) (lib.mkDefault packages.jaeger);
        };

      nixosConfigurations.example = nixpkgs.lib.nixosSystem {
        modules = [
          self.nixosModules.default
          ./nixos/example/host.nix
        ];
      };

      checks = forAll (
        pkgs:
        let
          packages = packagesOf pkgs;
        in
        {
          # Builds the workspace and runs the Rust tests.
          inherit (packages) valerix;

          nix-lint =
            pkgs.runCommand "valerix-nix-lint"
              {
                nativeBuildInputs = [
                  pkgs.nixfmt
                  pkgs.deadnix
                  pkgs.findutils
                ];
              }
              ''
                # nixos/vendor/ is nixpkgs' lib as published: not ours to format.
                files=$(find ${./nixos} -path '*/vendor' -prune -o -name '*.nix' -print)
                nixfmt --check ${./flake.nix} $files
                deadnix --fail ${./flake.nix} $files
                touch $out
              '';
        }
        // lib.optionalAttrs (isX86 pkgs) {
          vm-stack = import ./nixos/tests/stack.nix {
            inherit pkgs;
            inherit (packages) valerix jaeger;
          };
          vm-multinode = import ./nixos/tests/multinode.nix {
            inherit pkgs;
            inherit (packages) valerix;
          };
          vm-ha = import ./nixos/tests/ha.nix {
            inherit pkgs;
            inherit (packages) valerix;
          };
        }
      );

      formatter = forAll (pkgs: pkgs.nixfmt);
    };
}
