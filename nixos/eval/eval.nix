# Evaluates the flake's outputs with the nixpkgs `lib` alone: flake.nix is called
# with a stand-in nixpkgs (nixos/eval/pkgs.nix: no package is built), and every
# NixOS configuration the flake and the VM tests define is evaluated with
# `lib.evalModules` over its modules plus nixos/eval/stubs.nix (the upstream
# options they set, declared as nixpkgs declares them). An unknown option, a
# value of the wrong type or a failed assertion is an evaluation error, as on
# NixOS. The result is plain data for nixos/eval/check.py:
#
#   nix-instantiate --eval --strict --json nixos/eval/eval.nix \
#     --arg workspaceBins '[ "api-gateway" ... ]' [--argstr libPath /path/to/nixpkgs/lib]
{
  # The nixpkgs lib tree; NIXPKGS_LIB in check.py.
  libPath ? ../vendor/nixpkgs-lib/lib,
  workspaceBins,
  repoEntries ? { },
}:

let
  # lib.fileset calls builtins.readFileType (Nix 2.14); Debian's nix-instantiate
  # is 2.8. Where it is missing, the lib is imported with one made of readDir.
  compatBuiltins = builtins // {
    readFileType = path: (builtins.readDir (dirOf path)).${baseNameOf path};
  };
  importCompat =
    path:
    scopedImport {
      builtins = compatBuiltins;
      import = importCompat;
    } path;
  lib = if builtins ? readFileType then import libPath else importCompat libPath;

  pkgsFor =
    system:
    import ./pkgs.nix { inherit lib workspaceBins repoEntries; }
    // {
      stdenv.hostPlatform.system = system;
    };
  system = "x86_64-linux";
  pkgs = pkgsFor system;

  flake =
    let
      nixpkgs = {
        lib = lib // {
          nixosSystem = args: {
            _eval.kind = "nixosSystem";
            inherit (args) modules;
          };
        };
        legacyPackages = {
          ${system} = pkgs;
          aarch64-linux = pkgsFor "aarch64-linux";
        };
      };
      self = (import ../../flake.nix).outputs { inherit self nixpkgs; };
    in
    self;

  pkgInfo =
    p:
    p._eval or {
      name = p.name or "unknown";
      bins = [ ];
    };

  # A NixOS configuration as NixOS evaluates it: the failed assertions make it
  # an error, with their messages.
  evalHost =
    label: modules:
    let
      evaluated = lib.evalModules {
        modules = modules ++ [
          ./stubs.nix
          { _module.args.pkgs = pkgs; }
        ];
      };
      inherit (evaluated) config;
      failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      checked =
        if failed == [ ] then
          config
        else
          throw "${label}: failed assertions:\n- ${lib.concatStringsSep "\n- " failed}";
    in
    summary checked evaluated.options;

  summary = config: options: {
    services = lib.mapAttrs (_: unit: {
      inherit (unit)
        enable
        description
        after
        requires
        wants
        wantedBy
        environment
        serviceConfig
        unitConfig
        script
        ;
    }) config.systemd.services;
    targets = lib.mapAttrs (_: t: { inherit (t) requires wantedBy; }) config.systemd.targets;
    timers = lib.mapAttrs (_: t: { inherit (t) wantedBy timerConfig; }) config.systemd.timers;
    pgbackrest = {
      inherit (config.services.pgbackrest) enable repos;
      stanzas = lib.mapAttrs (_: s: { inherit (s) jobs; }) config.services.pgbackrest.stanzas;
    };
    systemPackages = map pkgInfo config.environment.systemPackages;
    # Where files are, not what they hold (the tests put tokens there).
    etc = lib.mapAttrs (_: e: {
      inherit (e) enable target mode;
      hasContent = e.text != null || e.source != null;
    }) config.environment.etc;
    users = lib.mapAttrs (_: u: {
      inherit (u)
        group
        isSystemUser
        isNormalUser
        extraGroups
        ;
    }) config.users.users;
    firewall = { inherit (config.networking.firewall) enable allowedTCPPorts; };
    postgresql = {
      inherit (config.services.postgresql)
        enable
        enableTCPIP
        authentication
        ensureDatabases
        ;
      inherit (config.services.postgresql) settings;
      port = config.services.postgresql.settings.port;
      ensureUsers = map (u: {
        inherit (u) name ensureDBOwnership;
      }) config.services.postgresql.ensureUsers;
    };
    prometheus = {
      inherit (config.services.prometheus)
        enable
        listenAddress
        port
        scrapeConfigs
        ruleFiles
        globalConfig
        ;
    };
    grafana = {
      inherit (config.services.grafana) enable settings;
      provision = {
        inherit (config.services.grafana.provision) enable;
        datasources = config.services.grafana.provision.datasources.settings;
        dashboards = config.services.grafana.provision.dashboards.settings;
        alertingRules = config.services.grafana.provision.alerting.rules.path;
      };
    };
    valerix = config.services.valerix or null;
    valerixOptions =
      if options ? services.valerix then
        map (o: {
          inherit (o) name type;
          description = o.description or null;
        }) (lib.optionAttrSetToDocList options.services.valerix)
      else
        [ ];
    inherit (config) warnings;
  };

  vmTest =
    name:
    let
      test = flake.checks.${system}.${name};
    in
    {
      inherit (test) testScript;
      nodes = lib.mapAttrs (
        node: module:
        evalHost "${name}.${node}" [
          module
          ./vm.nix
        ]
      ) test.nodes;
    };

  example = flake.nixosConfigurations.example;

  # The messages of the assertions a configuration fails, for one that must be refused.
  failedAssertions =
    modules:
    let
      inherit
        (lib.evalModules {
          modules = modules ++ [
            ./stubs.nix
            { _module.args.pkgs = pkgs; }
          ];
        })
        config
        ;
    in
    map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # Inventory and payment served by another host: the order service and the
  # gateway reach them at their listenAddress.
  split = {
    services.valerix = {
      enable = true;
      inventory = {
        enable = false;
        listenAddress = "192.0.2.12";
      };
      payment = {
        enable = false;
        listenAddress = "192.0.2.12";
      };
    };
  };
in
{
  package = flake.packages.${system}.valerix._eval;
  jaeger = flake.packages.${system}.jaeger._eval;
  app = flake.apps.${system}.default;
  devShell = flake.devShells.${system}.default._eval;
  configurations = {
    example = evalHost "nixosConfigurations.example" example.modules;
    # What a user gets from `services.valerix.enable = true` alone.
    defaults = evalHost "defaults" [
      flake.nixosModules.default
      { services.valerix.enable = true; }
    ];
    split = evalHost "split" [
      flake.nixosModules.default
      split
      { services.valerix.serviceTokenFile = "/run/keys/valerix-service-token"; }
    ];
  };
  # Configurations the module must refuse, with the messages it gives.
  refused = {
    split-without-service-token = failedAssertions [
      flake.nixosModules.default
      split
    ];
  };
  tests = {
    vm-stack = vmTest "vm-stack";
    vm-multinode = vmTest "vm-multinode";
  };
}
