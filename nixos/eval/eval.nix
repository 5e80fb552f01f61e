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
        before
        requires
        requiredBy
        wants
        wantedBy
        partOf
        bindsTo
        conflicts
        environment
        path
        serviceConfig
        unitConfig
        script
        preStart
        postStart
        ;
    }) config.systemd.services;
    targets = lib.mapAttrs (_: t: {
      inherit (t)
        description
        requires
        wants
        after
        wantedBy
        unitConfig
        ;
    }) config.systemd.targets;
    timers = lib.mapAttrs (_: t: {
      inherit (t)
        description
        after
        wants
        wantedBy
        timerConfig
        unitConfig
        ;
    }) config.systemd.timers;
    sockets = lib.mapAttrs (_: u: {
      inherit (u)
        description
        wantedBy
        listenStreams
        socketConfig
        unitConfig
        after
        ;
    }) config.systemd.sockets;
    tmpfiles = config.systemd.tmpfiles.rules;
    pgbackrest = {
      inherit (config.services.pgbackrest)
        enable
        repos
        settings
        commands
        ;
      stanzas = lib.mapAttrs (_: s: {
        inherit (s) jobs settings instances;
      }) config.services.pgbackrest.stanzas;
    };
    systemPackages = map pkgInfo config.environment.systemPackages;
    # Where files are, and what they hold for the systemd twin to write them
    # (the tests' own test-only tokens and passwords among them).
    etc = lib.mapAttrs (_: e: {
      inherit (e)
        enable
        target
        mode
        text
        ;
      source = if e.source == null then null else toString e.source;
      hasContent = e.text != null || e.source != null;
    }) config.environment.etc;
    users = lib.mapAttrs (_: u: {
      inherit (u)
        group
        isSystemUser
        isNormalUser
        extraGroups
        home
        createHome
        homeMode
        ;
    }) config.users.users;
    groups = lib.mapAttrs (_: g: { inherit (g) members; }) config.users.groups;
    firewall = { inherit (config.networking.firewall) enable allowedTCPPorts; };
    postgresql = {
      inherit (config.services.postgresql)
        enable
        enableTCPIP
        authentication
        identMap
        initdbArgs
        ensureDatabases
        ;
      dataDir = if config.services.postgresql.enable then config.services.postgresql.dataDir else null;
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
    # database.ha: what nixpkgs' patroni, etcd and haproxy modules are given.
    patroni = {
      inherit (config.services.patroni) enable environmentFiles;
      settings = if config.services.patroni.enable then config.services.patroni.settings else null;
    };
    etcd = {
      inherit (config.services.etcd)
        enable
        name
        listenClientUrls
        listenPeerUrls
        advertiseClientUrls
        initialAdvertisePeerUrls
        initialCluster
        ;
    };
    haproxy = { inherit (config.services.haproxy) enable config; };
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

  # nixos/example/valerix.nix imported into a host that sets its own
  # platform, state version, boot loader and file systems.
  fragmentHostModules = [
    flake.nixosModules.default
    ../example/valerix.nix
    {
      nixpkgs.hostPlatform = "aarch64-linux";
      system.stateVersion = "24.11";
      boot.loader.grub.device = "/dev/vda";
      fileSystems."/" = {
        device = "/dev/vda1";
        fsType = "xfs";
      };
    }
  ];
  fragmentHost =
    (lib.evalModules {
      modules = fragmentHostModules ++ [
        ./stubs.nix
        { _module.args.pkgs = pkgs; }
      ];
    }).config;

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
  # database.ha on three nodes. `db1` also runs the services (through its own
  # HAProxy, like a service host); the cases below break one rule each.
  haNodes = {
    db1 = "192.0.2.21";
    db2 = "192.0.2.22";
    db3 = "192.0.2.23";
  };
  haHost = extra: [
    flake.nixosModules.default
    {
      services.valerix = {
        enable = true;
        database.createLocally = false;
        database.ha = {
          enable = true;
          nodes = haNodes;
          nodeName = "db1";
          passwordFile = "/run/keys/valerix-database-password";
          superuserPasswordFile = "/run/keys/patroni-superuser-password";
          replicationPasswordFile = "/run/keys/patroni-replication-password";
          clientNetworks = [ "192.0.2.0/24" ];
        };
      };
    }
    extra
  ];

  # Definitions nixpkgs refuses (option types and checks), each of which the
  # stand-ins must refuse too: true when the evaluation fails.
  refusedBy =
    modules:
    !(builtins.tryEval (
      let
        c =
          (lib.evalModules {
            modules = [
              flake.nixosModules.default
              { services.valerix.enable = true; }
              ./stubs.nix
              { _module.args.pkgs = pkgs; }
            ]
            ++ modules;
          }).config;
      in
      builtins.deepSeq [
        c.systemd.services
        c.services.pgbackrest
        c.services.grafana.provision
        c.nixpkgs.hostPlatform
      ] true
    )).success;
  strict = {
    # nixos/lib/systemd-unit-options.nix: no on-watchdog in NixOS' list.
    "Restart=on-watchdog" = refusedBy [
      { systemd.services.valerix-order.serviceConfig.Restart = lib.mkForce "on-watchdog"; }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
    # pgbackrest.nix: `commands` has one submodule per pgBackRest command.
    "services.pgbackrest.commands.no-such-command" = refusedBy [
      { services.pgbackrest.commands.no-such-command.log-level-console = "info"; }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
    # pgbackrest.nix: secrets in a repository's settings would be in the store.
    "services.pgbackrest.repos.<name>.s3-key-secret" = refusedBy [
      { services.valerix.backup.enable = true; }
      { services.pgbackrest.repos.localhost.s3-key-secret = "secret"; }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
    # grafana.nix: a rule group needs a folder.
    "a Grafana rule group without a folder" = refusedBy [
      { services.valerix.grafana.enable = true; }
      {
        services.grafana.provision.alerting.rules.path = lib.mkForce null;
        services.grafana.provision.alerting.rules.settings.groups = [
          {
            name = "g";
            interval = "10s";
          }
        ];
      }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
    # nixpkgs.nix: no default platform.
    "a host without nixpkgs.hostPlatform" = refusedBy [ ];
    # etcd.nix: initialClusterState is "new" or "existing".
    "services.etcd.initialClusterState = joining" = refusedBy [
      {
        services.etcd = {
          enable = true;
          initialClusterState = "joining";
        };
      }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
    # patroni/default.nix: nodeIp (like scope, name, otherNodesIps and the
    # PostgreSQL package) has no default.
    "services.patroni without nodeIp" = refusedBy [
      {
        services.patroni = {
          enable = true;
          scope = "s";
          name = "n";
          otherNodesIps = [ ];
          postgresqlPackage = pkgs.postgresql_17;
        };
      }
      { nixpkgs.hostPlatform = "x86_64-linux"; }
    ];
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
    fragment-in-host = evalHost "nixos/example/valerix.nix in a host" fragmentHostModules;
    ha-db-with-services = evalHost "ha-db-with-services" (haHost { });
    split = evalHost "split" [
      flake.nixosModules.default
      split
      { services.valerix.serviceTokenFile = "/run/keys/valerix-service-token"; }
    ];
  };
  # The host's own settings, as that host set them: the fragment defines none.
  fragmentHostSettings = {
    inherit (fragmentHost.nixpkgs) hostPlatform;
    inherit (fragmentHost.system) stateVersion;
    grubDevice = fragmentHost.boot.loader.grub.device;
    root = { inherit (fragmentHost.fileSystems."/") device fsType; };
  };
  # Configurations the module must refuse, with the messages it gives.
  refused = {
    split-without-service-token = failedAssertions [
      flake.nixosModules.default
      split
    ];
    ha-with-local-postgresql = failedAssertions (haHost {
      services.valerix.database.createLocally = lib.mkForce true;
    });
    ha-with-url-file = failedAssertions (haHost {
      services.valerix.database.urlFile = "/run/keys/valerix-database-url";
    });
    ha-with-backup = failedAssertions (haHost {
      services.valerix.backup.enable = true;
    });
    ha-two-nodes = failedAssertions (haHost {
      services.valerix.database.ha.nodes = lib.mkForce { inherit (haNodes) db1 db2; };
    });
    ha-unknown-node-name = failedAssertions (haHost {
      services.valerix.database.ha.nodeName = lib.mkForce "db9";
    });
    ha-ipv6-node = failedAssertions (haHost {
      services.valerix.database.ha.nodes.db3 = lib.mkForce "2001:db8::23";
    });
    ha-without-password = failedAssertions (haHost {
      services.valerix.database.ha.passwordFile = lib.mkForce null;
    });
    ha-node-without-superuser-password = failedAssertions (haHost {
      services.valerix.database.ha.superuserPasswordFile = lib.mkForce null;
    });
    ha-password-in-store = failedAssertions (haHost {
      services.valerix.database.ha.replicationPasswordFile =
        lib.mkForce "${builtins.storeDir}/x-password";
    });
  };
  inherit strict;
  # The same evaluation of a plain host succeeds (so a refusal above is the case's).
  strictControl = refusedBy [ { nixpkgs.hostPlatform = "x86_64-linux"; } ];
  tests = {
    vm-stack = vmTest "vm-stack";
    vm-multinode = vmTest "vm-multinode";
    vm-ha = vmTest "vm-ha";
  };
}
