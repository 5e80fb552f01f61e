# The NixOS options that nixos/module.nix, nixos/example/ and the VM tests'
# nodes set outside `services.valerix`, declared as nixpkgs 25.11 declares them,
# so that `lib.evalModules` with the nixpkgs `lib` alone (nixos/eval/eval.nix)
# rejects what a real NixOS evaluation would reject: an option that does not
# exist, a value of the wrong type, a failed assertion.
#
# Only the options used here are declared (a submodule lists the ones in use;
# a new one gives "option does not exist" until it is added here, looked up in
# the file named above it). Where an upstream module also *does* something the
# checks rely on (puts a package on PATH, defines a unit or a user, adds
# pg_hba lines, asserts), that part is mirrored in `config` below, file by file.
# Paths are nixpkgs paths; the copies read were of nixos-25.11 or close to it.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkAfter
    mkBefore
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    types
    ;

  opt =
    type: default:
    mkOption {
      inherit type default;
      description = "Declared as in nixpkgs; see the file named above it.";
    };
  req =
    type:
    mkOption {
      inherit type;
      description = "Declared as in nixpkgs; see the file named above it.";
    };
  nullOpt = type: opt (types.nullOr type) null;

  # nixos/lib/systemd-lib.nix: unitNameType.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # nixos/lib/systemd-unit-options.nix: unitOption. Lists are repeated settings
  # and concatenate; anything else must be defined once (or equally).
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.isList (lib.head defs').value then
        lib.concatMap (
          def:
          if builtins.typeOf def.value == "list" then
            def.value
          else
            throw "The definitions for systemd unit options should be either all lists, representing repeatable options, or all non-lists, but for the option ${lib.showOption loc}, the definitions are a mix of list and non-list ${lib.options.showDefs defs'}"
        ) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  # nixos/lib/systemd-unit-options.nix: checkService, the Type= and Restart=
  # values NixOS accepts (Restart= without systemd's on-watchdog: nixpkgs'
  # list is no, on-success, on-failure, on-abnormal, on-abort, always).
  checkService =
    attrs:
    let
      # As checkUnitConfig: a definition may be wrapped in mkOverride or mkIf.
      cfg = lib.mapAttrs (
        _: v: if v._type or "" == "override" || v._type or "" == "if" then v.content else v
      ) attrs;
    in
    (
      cfg ? Type
      -> lib.elem cfg.Type [
        "exec"
        "simple"
        "forking"
        "oneshot"
        "dbus"
        "notify"
        "notify-reload"
        "idle"
      ]
    )
    && (
      cfg ? Restart
      -> lib.elem cfg.Restart [
        "no"
        "on-success"
        "on-failure"
        "on-abnormal"
        "on-abort"
        "always"
      ]
    );

  # nixos/lib/systemd-unit-options.nix: commonUnitOptions (and sharedOptions).
  commonUnitOptions = {
    enable = opt types.bool true;
    description = opt types.singleLineStr "";
    documentation = opt (types.listOf types.str) [ ];
    wantedBy = opt (types.listOf unitNameType) [ ];
    requiredBy = opt (types.listOf unitNameType) [ ];
    requires = opt (types.listOf unitNameType) [ ];
    wants = opt (types.listOf unitNameType) [ ];
    after = opt (types.listOf unitNameType) [ ];
    before = opt (types.listOf unitNameType) [ ];
    bindsTo = opt (types.listOf unitNameType) [ ];
    partOf = opt (types.listOf unitNameType) [ ];
    conflicts = opt (types.listOf unitNameType) [ ];
    unitConfig = opt (types.attrsOf unitOption) { };
  };

  # nixos/lib/systemd-unit-options.nix: serviceOptions and stage2ServiceOptions.
  serviceModule =
    { name, config, ... }:
    {
      options = commonUnitOptions // {
        environment = opt (types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        )) { };
        path = opt (types.listOf (
          types.oneOf [
            types.package
            types.str
          ]
        )) [ ];
        serviceConfig = opt (types.addCheck (types.attrsOf unitOption) checkService) { };
        script = opt types.lines "";
        scriptArgs = opt types.str "";
        preStart = opt types.lines "";
        postStart = opt types.lines "";
        restartTriggers = opt (types.listOf types.unspecified) [ ];
        restartIfChanged = opt types.bool true;
      };
      # A `script` becomes ExecStart= (a bash job script); defining both clashes,
      # as it does upstream.
      config = mkMerge [
        (mkIf (config.script != "") {
          serviceConfig.ExecStart = "/nix/store/${name}-start ${config.scriptArgs}";
        })
        (mkIf (config.preStart != "") {
          serviceConfig.ExecStartPre = [ "/nix/store/${name}-pre-start" ];
        })
      ];
    };

  # nixos/modules/config/system-path.nix: corePackageNames, defaultPackageNames.
  corePackageNames = [
    "acl"
    "attr"
    "bashInteractive"
    "bzip2"
    "coreutils-full"
    "cpio"
    "curl"
    "diffutils"
    "findutils"
    "gawk"
    "getent"
    "getconf"
    "gnugrep"
    "gnupatch"
    "gnused"
    "gnutar"
    "gzip"
    "xz"
    "less"
    "libcap"
    "ncurses"
    "netcat"
    "mkpasswd"
    "procps"
    "su"
    "time"
    "util-linux"
    "which"
    "zstd"
  ];
  defaultPackageNames = [
    "perl"
    "rsync"
    "strace"
  ];

  pg = config.services.postgresql;
  pgbr = config.services.pgbackrest;

  # nixos/modules/services/backup/pgbackrest.nix: settingsType, and the
  # jobs of every stanza as (unit name, job) pairs.
  pgbackrestSettings = types.attrsOf (
    types.oneOf [
      types.bool
      types.ints.unsigned
      types.str
      (types.attrsOf types.str)
      (types.listOf types.str)
    ]
  );
  pgbackrestJobs = lib.concatLists (
    lib.mapAttrsToList (
      stanza: s:
      lib.mapAttrsToList (job: j: {
        name = "pgbackrest-${stanza}-${job}";
        inherit stanza job;
        inherit (j) schedule type;
      }) s.jobs
    ) pgbr.stanzas
  );
  # The `commands` pgbackrest.nix declares (https://pgbackrest.org/command.html).
  pgbackrestCommands = [
    "annotate"
    "archive-get"
    "archive-push"
    "backup"
    "check"
    "expire"
    "help"
    "info"
    "repo-get"
    "repo-ls"
    "restore"
    "server"
    "server-ping"
    "stanza-create"
    "stanza-delete"
    "stanza-upgrade"
    "start"
    "stop"
    "verify"
    "version"
  ];
  disabledOption = mkOption {
    default = null;
    readOnly = true;
    internal = true;
    description = "Refused: it would put a secret into the Nix store.";
  };
  # lib.types.externalPath: a path outside the Nix store.
  externalPath = types.addCheck types.str (
    p: lib.hasPrefix "/" p && !lib.hasPrefix builtins.storeDir p
  );
  # postgresql.nix: configFile, `settings` as `name = value` lines.
  pgToStr =
    value:
    if true == value then
      "yes"
    else if false == value then
      "no"
    else if lib.isString value then
      "'${lib.replaceStrings [ "'" ] [ "''" ] value}'"
    else
      toString value;
  pgConfigFile = pkgs.writeText "postgresql.conf" (
    lib.concatStringsSep "\n" (lib.mapAttrsToList (n: v: "${n} = ${pgToStr v}") pg.settings)
  );
  prom = config.services.prometheus;
  # prometheus/default.nix: the generated prometheus.yml (JSON is YAML), the
  # rule files as given plus the `rules` strings in one file.
  prometheusYml = pkgs.writeText "prometheus.yml" (
    builtins.toJSON {
      global = lib.filterAttrs (_: v: v != null) prom.globalConfig;
      rule_files = prom.ruleFiles ++ [
        (pkgs.writeText "prometheus.rules" (lib.concatStringsSep "\n" prom.rules))
      ];
      scrape_configs = map (lib.filterAttrs (_: v: v != null)) prom.scrapeConfigs;
    }
  );
  graf = config.services.grafana;

  # database.ha. nixos/modules/services/cluster/patroni/default.nix: the YAML it
  # writes, named after scope and name.
  patroni = config.services.patroni;
  patroniConfigName = "patroni-${patroni.scope}-${patroni.name}.yaml";
  patroniConfigFile = (pkgs.formats.yaml { }).generate patroniConfigName patroni.settings;
  etcd = config.services.etcd;
  haproxy = config.services.haproxy;
  # nixos/modules/services/networking/haproxy.nix: its own `global` section, then `config`.
  haproxyConfigFile = pkgs.writeText "haproxy.conf" ''
    global
      # needed for hot-reload to work without dropping packets in multi-worker mode
      stats socket /run/haproxy/haproxy.sock mode 600 expose-fd listeners level user
    ${haproxy.config}
  '';

  # nixos/modules/services/monitoring/grafana.nix: grafanaTypes.datasourceConfig
  # and dashboardConfig (freeform YAML plus these options).
  datasourceConfig = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      name = req types.str;
      type = req types.str;
      access = opt (types.enum [
        "proxy"
        "direct"
      ]) "proxy";
      uid = nullOpt types.str;
      url = opt types.str "localhost";
      editable = opt types.bool false;
      jsonData = nullOpt types.attrs;
      secureJsonData = nullOpt types.attrs;
    };
  };
  dashboardConfig = types.submodule {
    freeformType = types.attrsOf types.anything;
    options = {
      name = opt types.str "default";
      type = opt types.str "file";
      options.path = req types.path;
    };
  };
  # grafana.nix: provision.datasources / provision.dashboards (settings or path).
  provisionOf =
    listName: elemType:
    opt (types.submodule {
      options = {
        settings = nullOpt (
          types.submodule {
            options = {
              apiVersion = opt types.int 1;
              ${listName} = opt (types.listOf elemType) [ ];
            };
          }
        );
        path = nullOpt types.path;
      };
    }) { };
  # grafana.nix: provision.alerting.<kind>.{path,settings}; each kind's
  # settings a submodule with its own lists (rule groups need a name, a
  # folder and an interval), not any attribute set.
  alertingOf = listOptions: {
    path = nullOpt types.path;
    settings = nullOpt (
      types.submodule {
        freeformType = types.attrsOf types.anything;
        options = {
          apiVersion = opt types.int 1;
        }
        // listOptions;
      }
    );
  };
  alertingLists = {
    rules = {
      groups = opt (types.listOf (
        types.submodule {
          freeformType = types.attrsOf types.anything;
          options = {
            name = req types.str;
            folder = req types.str;
            interval = req types.str;
          };
        }
      )) [ ];
      deleteRules = opt (types.listOf (
        types.submodule {
          options.orgId = opt types.int 1;
          options.uid = req types.str;
        }
      )) [ ];
    };
    contactPoints.contactPoints = opt (types.listOf (types.attrsOf types.anything)) [ ];
    policies.policies = opt (types.listOf (types.attrsOf types.anything)) [ ];
    templates.templates = opt (types.listOf (
      types.submodule {
        freeformType = types.attrsOf types.anything;
        options.name = req types.str;
        options.template = req types.str;
      }
    )) [ ];
    muteTimings.muteTimes = opt (types.listOf (types.attrsOf types.anything)) [ ];
  };

  # nixos/modules/services/monitoring/prometheus/default.nix: promTypes.
  staticConfig = types.submodule {
    options = {
      targets = req (types.listOf types.str);
      labels = opt (types.attrsOf types.str) { };
    };
  };
  scrapeConfig = types.submodule {
    options = {
      job_name = req types.str;
      static_configs = nullOpt (types.listOf staticConfig);
      scrape_interval = nullOpt types.str;
      scrape_timeout = nullOpt types.str;
      metrics_path = nullOpt types.str;
      scheme = nullOpt (
        types.enum [
          "http"
          "https"
        ]
      );
      honor_labels = nullOpt types.bool;
    };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = opt (types.listOf types.str) [ ];

    # nixos/modules/misc/version.nix
    system.stateVersion = opt types.str lib.trivial.release;
    # nixos/modules/misc/nixpkgs.nix
    # No default: without it (or nixpkgs.system) NixOS falls back to
    # builtins.currentSystem, which a flake's pure evaluation refuses.
    nixpkgs.hostPlatform = req (types.either types.str types.attrs);
    # nixos/modules/system/boot/loader/grub/grub.nix
    boot.loader.grub.device = opt types.str "";
    # nixos/modules/tasks/filesystems.nix
    fileSystems = opt (types.attrsOf (
      types.submodule {
        options = {
          device = nullOpt types.nonEmptyStr;
          fsType = opt types.nonEmptyStr "auto";
          options = opt (types.listOf types.nonEmptyStr) [ "defaults" ];
        };
      }
    )) { };

    # nixos/modules/config/system-path.nix
    environment.systemPackages = opt (types.listOf types.package) [ ];
    # nixos/modules/system/etc/etc.nix (there `source` defaults to the `text`
    # written to the store; a stand-in store path needs no default).
    environment.etc = opt (types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options = {
            enable = opt types.bool true;
            target = opt types.str name;
            text = nullOpt types.lines;
            source = nullOpt types.path;
            mode = opt types.str "symlink";
            user = opt types.str "+0";
            group = opt types.str "+0";
          };
        }
      )
    )) { };

    # nixos/modules/config/users-groups.nix: userOpts, groupOpts.
    users.users = opt (types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options = {
            name = opt (types.passwdEntry types.str) name;
            description = opt (types.passwdEntry types.str) "";
            uid = nullOpt types.int;
            group = opt types.str "";
            extraGroups = opt (types.listOf types.str) [ ];
            home = opt (types.passwdEntry types.path) "/var/empty";
            createHome = opt types.bool false;
            homeMode = opt (types.strMatching "[0-7]{1,5}") "700";
            useDefaultShell = opt types.bool false;
            isSystemUser = opt types.bool false;
            isNormalUser = opt types.bool false;
          };
        }
      )
    )) { };
    users.groups = opt (types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options = {
            name = opt (types.passwdEntry types.str) name;
            gid = nullOpt types.int;
            members = opt (types.listOf (types.passwdEntry types.str)) [ ];
          };
        }
      )
    )) { };

    # nixos/modules/system/boot/systemd.nix with nixos/lib/systemd-unit-options.nix
    systemd.services = opt (types.attrsOf (types.submodule serviceModule)) { };
    systemd.targets = opt (types.attrsOf (types.submodule { options = commonUnitOptions; })) { };
    # nixos/lib/systemd-unit-options.nix: socketOptions.
    systemd.sockets = opt (types.attrsOf (
      types.submodule {
        options = commonUnitOptions // {
          listenStreams = opt (types.listOf types.str) [ ];
          listenDatagrams = opt (types.listOf types.str) [ ];
          socketConfig = opt (types.attrsOf unitOption) { };
        };
      }
    )) { };
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = opt (types.listOf types.str) [ ];
    # nixos/lib/systemd-unit-options.nix: timerOptions.
    systemd.timers = opt (types.attrsOf (
      types.submodule {
        options = commonUnitOptions // {
          timerConfig = opt (types.attrsOf unitOption) { };
        };
      }
    )) { };

    # nixos/modules/services/networking/firewall.nix
    networking.firewall = {
      enable = opt types.bool true;
      package = opt types.package pkgs.iptables;
      allowedTCPPorts = opt (types.listOf types.port) [ ] // {
        apply = ports: lib.unique (builtins.sort builtins.lessThan ports);
      };
      allowedUDPPorts = opt (types.listOf types.port) [ ];
    };

    # nixos/modules/services/databases/postgresql.nix
    services.postgresql = {
      enable = mkEnableOption "PostgreSQL Server";
      package = req types.package;
      enableTCPIP = opt types.bool false;
      authentication = opt types.lines "";
      identMap = opt types.lines "";
      dataDir = opt types.path "/var/lib/postgresql/${pg.package.psqlSchema or "17"}";
      initdbArgs = opt (types.listOf types.str) [ ];
      initialScript = nullOpt types.path;
      ensureDatabases = opt (types.listOf types.str) [ ];
      ensureUsers = opt (types.listOf (
        types.submodule {
          options = {
            name = req types.str;
            ensureDBOwnership = opt types.bool false;
            ensureClauses = opt (types.submodule {
              options = lib.genAttrs [
                "superuser"
                "createrole"
                "createdb"
                "inherit"
                "login"
                "replication"
                "bypassrls"
              ] (_: nullOpt types.bool);
            }) { };
          };
        }
      )) [ ];
      settings = opt (types.submodule {
        freeformType = types.attrsOf (
          types.oneOf [
            types.bool
            types.float
            types.int
            types.str
          ]
        );
        options.port = opt types.port 5432;
      }) { };
    };

    # nixos/modules/services/backup/pgbackrest.nix (in nixpkgs since 25.05).
    # `commands` is a fixed set of per-command submodules there; any name in this stub.
    services.pgbackrest = {
      enable = mkEnableOption "pgBackRest";
      repos = opt (types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            freeformType = pgbackrestSettings;
            options = {
              host = opt (types.nullOr types.str) (if name == "localhost" then null else name);
              sftp-private-key-file = nullOpt externalPath;
              gcs-key = nullOpt externalPath;
              host-cert-file = nullOpt externalPath;
              host-key-file = nullOpt externalPath;
            }
            # Secrets that would land in the Nix store: read-only null upstream.
            // lib.genAttrs [
              "azure-key"
              "cipher-pass"
              "s3-key"
              "s3-key-secret"
              "s3-kms-key-id"
              "s3-sse-customer-key"
              "s3-token"
              "sftp-private-key-passphrase"
            ] (_: disabledOption);
          }
        )
      )) { };
      stanzas = opt (types.attrsOf (
        types.submodule {
          options = {
            jobs = opt (types.attrsOf (
              types.submodule {
                options.schedule = req types.str;
                options.type = req types.str;
              }
            )) { };
            instances = opt (types.attrsOf (
              types.submodule (
                { name, ... }:
                {
                  freeformType = pgbackrestSettings;
                  options.host = opt (types.nullOr types.str) (if name == "localhost" then null else name);
                }
              )
            )) { };
            settings = opt (types.submodule { freeformType = pgbackrestSettings; }) { };
          };
        }
      )) { };
      settings = opt (types.submodule { freeformType = pgbackrestSettings; }) { };
      # One submodule per pgBackRest command, no other name.
      commands = lib.genAttrs pgbackrestCommands (
        _: opt (types.submodule { freeformType = pgbackrestSettings; }) { }
      );
    };

    # nixos/modules/services/cluster/patroni/default.nix (nixos-25.11: raft and
    # raftPort removed; the assertion against services.postgresql's dataDir).
    services.patroni = {
      enable = mkEnableOption "Patroni";
      dataDir = opt types.path "/var/lib/patroni";
      environmentFiles = opt (types.attrsOf (
        types.nullOr (
          types.oneOf [
            types.str
            types.path
            types.package
          ]
        )
      )) { };
      group = opt types.str "patroni";
      name = req types.str;
      namespace = opt types.str "/service";
      nodeIp = req types.str;
      otherNodesIps = req (types.listOf types.str);
      postgresqlDataDir = opt types.path "/var/lib/postgresql/${
        patroni.postgresqlPackage.psqlSchema or "17"
      }";
      postgresqlPackage = req types.package;
      postgresqlPort = opt types.port 5432;
      restApiPort = opt types.port 8008;
      scope = req types.str;
      settings = opt (pkgs.formats.yaml { }).type { };
      softwareWatchdog = opt types.bool false;
      user = opt types.str "patroni";
    };

    # nixos/modules/services/misc/etcd.nix
    services.etcd = {
      enable = opt types.bool false;
      package = opt types.package pkgs.etcd;
      advertiseClientUrls = opt (types.listOf types.str) etcd.listenClientUrls;
      certFile = nullOpt types.path;
      clientCertAuth = opt types.bool false;
      dataDir = opt types.path "/var/lib/etcd";
      discovery = opt types.str "";
      extraConf = opt (types.attrsOf types.str) { };
      initialAdvertisePeerUrls = opt (types.listOf types.str) etcd.listenPeerUrls;
      initialCluster = opt (types.listOf types.str) [ "${etcd.name}=http://127.0.0.1:2380" ];
      initialClusterState = opt (types.enum [
        "new"
        "existing"
      ]) "new";
      initialClusterToken = opt types.str "etcd-cluster";
      keyFile = nullOpt types.path;
      listenClientUrls = opt (types.listOf types.str) [ "http://127.0.0.1:2379" ];
      listenPeerUrls = opt (types.listOf types.str) [ "http://127.0.0.1:2380" ];
      # Upstream: config.networking.hostName, whose default is "nixos".
      name = opt types.str "nixos";
      openFirewall = opt types.bool false;
      peerCertFile = opt (types.nullOr types.path) etcd.certFile;
      peerClientCertAuth = opt types.bool false;
      peerKeyFile = opt (types.nullOr types.path) etcd.keyFile;
      peerTrustedCaFile = opt (types.nullOr types.path) etcd.trustedCaFile;
      trustedCaFile = nullOpt types.path;
    };

    # nixos/modules/services/networking/haproxy.nix
    services.haproxy = {
      config = nullOpt types.lines;
      enable = mkEnableOption "HAProxy, the reliable, high performance TCP/HTTP load balancer";
      package = opt types.package pkgs.haproxy;
      group = opt types.str "haproxy";
      user = opt types.str "haproxy";
    };

    # nixos/modules/services/monitoring/prometheus/default.nix
    services.prometheus = {
      enable = mkEnableOption "Prometheus monitoring daemon";
      package = opt types.package pkgs.prometheus;
      listenAddress = opt types.str "0.0.0.0";
      port = opt types.port 9090;
      checkConfig = opt (types.either types.bool (types.enum [ "syntax-only" ])) true;
      globalConfig = opt (types.submodule {
        options = {
          evaluation_interval = nullOpt types.str;
          external_labels = nullOpt (types.attrsOf types.str);
          query_log_file = nullOpt types.str;
          scrape_interval = nullOpt types.str;
          scrape_timeout = nullOpt types.str;
        };
      }) { };
      scrapeConfigs = opt (types.listOf scrapeConfig) [ ];
      ruleFiles = opt (types.listOf types.path) [ ];
      rules = opt (types.listOf types.str) [ ];
    };

    # nixos/modules/services/monitoring/grafana.nix
    services.grafana = {
      enable = mkEnableOption "grafana";
      package = opt types.package pkgs.grafana;
      dataDir = opt types.str "/var/lib/grafana";
      settings = opt (types.submodule {
        freeformType = types.attrsOf (
          types.attrsOf (
            types.nullOr (
              types.oneOf [
                types.bool
                types.int
                types.float
                types.str
              ]
            )
          )
        );
        options = {
          server = {
            protocol = opt (types.enum [
              "http"
              "https"
              "h2"
              "socket"
            ]) "http";
            http_addr = opt types.str "127.0.0.1";
            http_port = opt types.port 3000;
            domain = opt types.str "localhost";
          };
          security = {
            admin_user = opt types.str "admin";
            admin_password = opt types.str "admin";
            secret_key = opt types.str "";
          };
        };
      }) { };
      provision = {
        enable = mkEnableOption "provision";
        datasources = provisionOf "datasources" datasourceConfig;
        dashboards = provisionOf "providers" dashboardConfig;
        alerting = lib.mapAttrs (_: alertingOf) alertingLists;
      };
    };
  };

  config = mkMerge [
    {
      # nixos/modules/config/system-path.nix and nixos/modules/system/boot/systemd.nix
      environment.systemPackages = map (n: pkgs.${n}) (corePackageNames ++ defaultPackageNames) ++ [
        pkgs.systemd
      ];

      # nixos/modules/config/users-groups.nix: the base accounts and the
      # per-user assertions.
      users.users = {
        root = {
          uid = 0;
          group = "root";
          home = "/root";
        };
        nobody = {
          uid = 65534;
          isSystemUser = true;
          group = "nogroup";
        };
      };
      users.groups = {
        root.gid = 0;
        nogroup.gid = 65534;
      };
      assertions = lib.concatMap (
        user:
        let
          isEffectivelySystemUser =
            user.isSystemUser || (user.uid != null && user.uid < 1000 && !user.isNormalUser);
        in
        [
          {
            assertion = lib.xor isEffectivelySystemUser user.isNormalUser;
            message = "Exactly one of users.users.${user.name}.isSystemUser and users.users.${user.name}.isNormalUser must be set.";
          }
          {
            assertion = user.group != "";
            message = "users.users.${user.name}.group is unset.";
          }
          {
            assertion = config.users.groups ? ${user.group};
            message = "users.users.${user.name}.group = \"${user.group}\" is not a group in users.groups.";
          }
        ]
      ) (lib.attrValues config.users.users);
    }

    # nixos/modules/services/networking/firewall.nix
    (mkIf config.networking.firewall.enable {
      environment.systemPackages = [ config.networking.firewall.package ];
    })

    # nixos/modules/services/databases/postgresql.nix
    (mkIf pg.enable {
      services.postgresql.package = mkDefault (
        if lib.versionAtLeast config.system.stateVersion "25.11" then
          pkgs.postgresql_17
        else
          pkgs.postgresql
      );
      # The default map behind `peer map=postgres`: the postgres user alone.
      services.postgresql.identMap = mkAfter ''
        postgres postgres postgres
      '';
      services.postgresql.settings = {
        hba_file = "${pkgs.writeText "pg_hba.conf" pg.authentication}";
        ident_file = "${pkgs.writeText "pg_ident.conf" pg.identMap}";
        log_destination = "stderr";
        listen_addresses = if pg.enableTCPIP then "*" else "localhost";
        jit = mkDefault "off";
      };
      services.postgresql.authentication = mkMerge [
        (mkBefore "# Generated file; do not edit!")
        (mkAfter ''
          # default value of services.postgresql.authentication
          local all postgres         peer map=postgres
          local all all              peer
          host  all all 127.0.0.1/32 md5
          host  all all ::1/128      md5
        '')
      ];
      assertions = map (
        { name, ensureDBOwnership, ... }:
        {
          assertion = ensureDBOwnership -> lib.elem name pg.ensureDatabases;
          message = "services.postgresql.ensureUsers: ${name} has ensureDBOwnership but no database of that name in ensureDatabases.";
        }
      ) pg.ensureUsers;
      users.users.postgres = {
        uid = 71;
        group = "postgres";
        home = "/var/lib/postgresql";
      };
      users.groups.postgres.gid = 71;
      environment.systemPackages = [ pg.package ];
      systemd.targets.postgresql = {
        description = "PostgreSQL";
        wantedBy = [ "multi-user.target" ];
        requires = [
          "postgresql.service"
          "postgresql-setup.service"
        ];
      };
      # The unit as upstream writes it, hardening included: what an
      # archive_command or anything else PostgreSQL runs may touch is decided
      # here (the systemd twin runs this very unit).
      systemd.services.postgresql = {
        description = "PostgreSQL Server";
        after = [ "network.target" ];
        wants = [ "postgresql.target" ];
        partOf = [ "postgresql.target" ];
        environment.PGDATA = pg.dataDir;
        path = [ pg.package ];
        preStart = ''
          if ! test -e ${pg.dataDir}/PG_VERSION; then
            # Cleanup the data directory.
            rm -f ${pg.dataDir}/*.conf

            # Initialise the database.
            initdb -U postgres ${lib.escapeShellArgs pg.initdbArgs}

            # See postStart!
            touch "${pg.dataDir}/.first_startup"
          fi

          ln -sfn "${pgConfigFile}" "${pg.dataDir}/postgresql.conf"
        '';
        serviceConfig = {
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
          User = "postgres";
          Group = "postgres";
          RuntimeDirectory = "postgresql";
          Type = "notify";
          KillSignal = "SIGINT";
          KillMode = "mixed";
          TimeoutSec = 120;
          ExecStart = "${pg.package}/bin/postgres";
          Restart = "always";

          # Hardening
          CapabilityBoundingSet = [ "" ];
          DevicePolicy = "closed";
          PrivateTmp = true;
          ProtectHome = true;
          ProtectSystem = "strict";
          MemoryDenyWriteExecute = mkDefault (pg.settings.jit == "off");
          NoNewPrivileges = true;
          LockPersonality = true;
          PrivateDevices = true;
          PrivateMounts = true;
          ProcSubset = "pid";
          ProtectClock = true;
          ProtectControlGroups = true;
          ProtectHostname = true;
          ProtectKernelLogs = true;
          ProtectKernelModules = true;
          ProtectKernelTunables = true;
          ProtectProc = "invisible";
          RemoveIPC = true;
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_NETLINK"
            "AF_UNIX"
          ];
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = [
            "@system-service"
            "~@privileged @resources"
          ];
          UMask = "0027";
          # The default dataDir: systemd creates it for the postgres user.
          StateDirectory = "postgresql postgresql/${pg.package.psqlSchema or "17"}";
          StateDirectoryMode = "0750";
        };
        unitConfig.RequiresMountsFor = pg.dataDir;
      };
      systemd.services.postgresql-setup = {
        description = "PostgreSQL Setup Scripts";
        requires = [ "postgresql.service" ];
        after = [ "postgresql.service" ];
        partOf = [ "postgresql.target" ];
        path = [ pg.package ];
        environment.PGPORT = toString pg.settings.port;
        serviceConfig = {
          User = "postgres";
          Group = "postgres";
          Type = "oneshot";
          RemainAfterExit = true;
        };
        # Waits until PostgreSQL accepts connections and has left recovery (a
        # restore replays WAL first), then the ensure* options.
        script = ''
          while [ "$(psql -d postgres -tAc 'SELECT pg_is_in_recovery()' 2> /dev/null)" != f ]; do
            if ! systemctl is-active --quiet postgresql.service; then exit 1; fi
            sleep 0.1
          done
        ''
        + lib.concatMapStrings (db: ''
          psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'" | grep -q 1 || psql -tAc 'CREATE DATABASE "${db}"'
        '') pg.ensureDatabases
        + lib.concatMapStrings (u: ''
          psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='${u.name}'" | grep -q 1 || psql -tAc 'CREATE USER "${u.name}"'
          ${lib.optionalString u.ensureDBOwnership ''
            psql -tAc 'ALTER DATABASE "${u.name}" OWNER TO "${u.name}";'
          ''}
        '') pg.ensureUsers;
      };
    })

    # nixos/modules/services/backup/pgbackrest.nix: the user, the jobs' units and
    # timers, and for a local PostgreSQL the stanza `default` with archiving.
    (mkIf pgbr.enable {
      # (cmd-ssh, the path of ssh for remote repositories, left out: not used here.)
      services.pgbackrest.settings = {
        log-level-console = mkDefault "info";
        log-level-file = mkDefault "off";
      };
      environment.systemPackages = [ pkgs.pgbackrest ];
      users.users.pgbackrest = {
        group = "pgbackrest";
        description = "pgBackRest service user";
        isSystemUser = true;
        useDefaultShell = true;
        createHome = true;
        home = pgbr.repos.localhost.path or "/var/lib/pgbackrest";
        homeMode = mkIf pg.enable "710";
      };
      users.groups.pgbackrest = { };
      systemd.services = lib.listToAttrs (
        map (j: {
          inherit (j) name;
          value = {
            description = "pgBackRest job ${j.job} for stanza ${j.stanza}";
            serviceConfig = {
              User = "pgbackrest";
              Group = "pgbackrest";
              Type = "oneshot";
              ExecStartPre = "${pkgs.pgbackrest}/bin/pgbackrest --stanza='${j.stanza}' stanza-create";
              ExecStart = "${pkgs.pgbackrest}/bin/pgbackrest --stanza='${j.stanza}' backup --type='${j.type}'";
            };
          };
        }) pgbackrestJobs
      );
      systemd.timers = lib.listToAttrs (
        map (j: {
          inherit (j) name;
          value = {
            description = "pgBackRest job ${j.job} for stanza ${j.stanza}";
            wantedBy = [ "timers.target" ];
            after = [ "network-online.target" ];
            wants = [ "network-online.target" ];
            timerConfig = {
              OnCalendar = j.schedule;
              Persistent = true;
              Unit = "${j.name}.service";
            };
          };
        }) pgbackrestJobs
      );
    })
    (mkIf (pgbr.enable && pg.enable) {
      services.pgbackrest.stanzas.default = {
        settings.cmd = "${pkgs.pgbackrest}/bin/pgbackrest";
        # Upstream: services.postgresql.dataDir (not declared in this file); this is its default.
        instances.localhost = {
          path = "/var/lib/postgresql/${pg.package.psqlSchema or "17"}";
          user = "postgres";
        };
      };
      services.pgbackrest.commands.restore.lock-path = "/tmp/postgresql";
      services.postgresql.identMap = ''
        postgres pgbackrest postgres
      '';
      services.postgresql.initdbArgs = [ "--allow-group-access" ];
      users.users.pgbackrest.extraGroups = [ "postgres" ];
      services.postgresql.settings = {
        archive_command = ''${pkgs.pgbackrest}/bin/pgbackrest --stanza=default archive-push "%p"'';
        archive_mode = mkDefault "on";
      };
      users.groups.pgbackrest.members = [ "postgres" ];
    })

    # nixos/modules/services/cluster/patroni/default.nix
    (mkIf patroni.enable {
      assertions = [
        {
          assertion = !(pg.enable && patroni.postgresqlDataDir == pg.dataDir);
          message = ''
            Both services.patroni and services.postgresql are enabled and
            services.patroni.postgresqlDataDir == services.postgresql.dataDir
            Disable one or the other, or configure them to use different directories.
          '';
        }
      ];
      environment.etc.${patroniConfigName}.source = patroniConfigFile;
      environment.systemPackages = [
        pkgs.patroni
        patroni.postgresqlPackage
      ];
      services.patroni.settings = {
        inherit (patroni) name namespace scope;
        postgresql = {
          bin_dir = "${patroni.postgresqlPackage}/bin";
          connect_address = "${patroni.nodeIp}:${toString patroni.postgresqlPort}";
          data_dir = patroni.postgresqlDataDir;
          listen = "${patroni.nodeIp}:${toString patroni.postgresqlPort}";
          pgpass = "${patroni.dataDir}/pgpass";
        };
        restapi = {
          connect_address = "${patroni.nodeIp}:${toString patroni.restApiPort}";
          listen = "${patroni.nodeIp}:${toString patroni.restApiPort}";
        };
      };
      systemd.services.patroni = {
        after = [ "network.target" ];
        description = "Runners to orchestrate a high-availability PostgreSQL";
        script = ''
          ${lib.concatStringsSep "\n" (
            lib.mapAttrsToList (
              name: path: ''export ${name}="$(< ${lib.escapeShellArg path})"''
            ) patroni.environmentFiles
          )}
          exec ${lib.getExe pkgs.patroni} ${patroniConfigFile}
        '';
        serviceConfig = mkMerge [
          {
            ExecReload = "${pkgs.coreutils}/bin/kill -s HUP $MAINPID";
            Group = patroni.group;
            KillMode = "process";
            Restart = "on-failure";
            TimeoutSec = 30;
            Type = "simple";
            User = patroni.user;
          }
          (mkIf
            (
              patroni.postgresqlDataDir == "/var/lib/postgresql/${patroni.postgresqlPackage.psqlSchema or "17"}"
              && patroni.dataDir == "/var/lib/patroni"
            )
            {
              StateDirectory = "patroni postgresql postgresql/${patroni.postgresqlPackage.psqlSchema or "17"}";
              StateDirectoryMode = "0750";
            }
          )
        ];
        wantedBy = [ "multi-user.target" ];
      };
      users.groups = mkIf (patroni.group == "patroni") { patroni = { }; };
      users.users = mkIf (patroni.user == "patroni") {
        patroni = {
          group = patroni.group;
          isSystemUser = true;
        };
      };
    })

    # nixos/modules/services/misc/etcd.nix
    (mkIf etcd.enable {
      environment.systemPackages = [ etcd.package ];
      networking.firewall = mkIf etcd.openFirewall {
        allowedTCPPorts = [
          2379
          2380
        ];
      };
      systemd.services.etcd = {
        after = [
          "network-online.target"
        ]
        ++ lib.optional config.networking.firewall.enable "firewall.service";
        description = "etcd key-value store";
        environment =
          (lib.filterAttrs (_: v: v != null) {
            ETCD_ADVERTISE_CLIENT_URLS = lib.concatStringsSep "," etcd.advertiseClientUrls;
            ETCD_CERT_FILE = etcd.certFile;
            ETCD_CLIENT_CERT_AUTH = toString etcd.clientCertAuth;
            ETCD_DATA_DIR = etcd.dataDir;
            ETCD_DISCOVERY = etcd.discovery;
            ETCD_INITIAL_ADVERTISE_PEER_URLS = lib.concatStringsSep "," etcd.initialAdvertisePeerUrls;
            ETCD_KEY_FILE = etcd.keyFile;
            ETCD_LISTEN_CLIENT_URLS = lib.concatStringsSep "," etcd.listenClientUrls;
            ETCD_LISTEN_PEER_URLS = lib.concatStringsSep "," etcd.listenPeerUrls;
            ETCD_NAME = etcd.name;
            ETCD_PEER_CERT_FILE = etcd.peerCertFile;
            ETCD_PEER_CLIENT_CERT_AUTH = toString etcd.peerClientCertAuth;
            ETCD_PEER_KEY_FILE = etcd.peerKeyFile;
            ETCD_PEER_TRUSTED_CA_FILE = etcd.peerTrustedCaFile;
            ETCD_TRUSTED_CA_FILE = etcd.trustedCaFile;
          })
          // lib.optionalAttrs (etcd.discovery == "") {
            ETCD_INITIAL_CLUSTER = lib.concatStringsSep "," etcd.initialCluster;
            ETCD_INITIAL_CLUSTER_STATE = etcd.initialClusterState;
            ETCD_INITIAL_CLUSTER_TOKEN = etcd.initialClusterToken;
          }
          // lib.mapAttrs' (n: v: lib.nameValuePair "ETCD_${n}" v) etcd.extraConf;
        serviceConfig = {
          ExecStart = "${etcd.package}/bin/etcd";
          LimitNOFILE = 40000;
          Restart = "always";
          RestartSec = "30s";
          Type = "notify";
          User = "etcd";
        };
        unitConfig.Documentation = "https://github.com/coreos/etcd";
        wantedBy = [ "multi-user.target" ];
        wants = [
          "network-online.target"
        ]
        ++ lib.optional config.networking.firewall.enable "firewall.service";
      };
      users.groups.etcd = { };
      users.users.etcd = {
        description = "Etcd daemon user";
        group = "etcd";
        home = etcd.dataDir;
        isSystemUser = true;
      };
    })

    # nixos/modules/services/networking/haproxy.nix
    (mkIf haproxy.enable {
      assertions = [
        {
          assertion = haproxy.config != null;
          message = "You must provide services.haproxy.config.";
        }
      ];
      environment.etc."haproxy.cfg".source = haproxyConfigFile;
      systemd.services.haproxy = {
        after = [ "network.target" ];
        description = "HAProxy";
        serviceConfig = {
          AmbientCapabilities = "CAP_NET_BIND_SERVICE";
          ExecReload = [
            "${pkgs.coreutils}/bin/ln -sf ${lib.getExe haproxy.package} /run/haproxy/haproxy"
            "${pkgs.coreutils}/bin/kill -USR2 $MAINPID"
          ];
          ExecStart = "/run/haproxy/haproxy -Ws -f /etc/haproxy.cfg -p /run/haproxy/haproxy.pid";
          ExecStartPre = [
            "${pkgs.coreutils}/bin/ln -sf ${lib.getExe haproxy.package} /run/haproxy/haproxy"
          ];
          Group = haproxy.group;
          KillMode = "mixed";
          NoNewPrivileges = true;
          ProtectControlGroups = true;
          ProtectHome = true;
          ProtectKernelModules = true;
          ProtectKernelTunables = true;
          ProtectSystem = "strict";
          Restart = "always";
          RuntimeDirectory = "haproxy";
          SuccessExitStatus = "143";
          SystemCallFilter = "~@cpu-emulation @keyring @module @obsolete @raw-io @reboot @swap @sync";
          Type = "notify";
          User = haproxy.user;
        };
        wantedBy = [ "multi-user.target" ];
      };
      users.groups = lib.optionalAttrs (haproxy.group == "haproxy") { haproxy = { }; };
      users.users = lib.optionalAttrs (haproxy.user == "haproxy") {
        haproxy = {
          group = haproxy.group;
          isSystemUser = true;
        };
      };
    })

    # nixos/modules/services/monitoring/prometheus/default.nix
    (mkIf prom.enable {
      assertions = [
        {
          assertion = builtins.match "(.*\\..*|.*]):([[:digit:]]+)" prom.listenAddress == null;
          message = "Do not specify the port for Prometheus to listen on in the listenAddress option; use the port option instead.";
        }
      ];
      systemd.services.prometheus = {
        after = [ "network.target" ];
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart =
            "${prom.package}/bin/prometheus"
            + " --storage.tsdb.path=/var/lib/prometheus2/data/"
            + " --config.file=${prometheusYml}"
            + " --web.listen-address=${prom.listenAddress}:${toString prom.port}";
          User = "prometheus";
          Restart = "always";
          RuntimeDirectory = "prometheus";
          RuntimeDirectoryMode = "0700";
          WorkingDirectory = "/var/lib/prometheus2";
          StateDirectory = "prometheus2";
          StateDirectoryMode = "0700";
        };
      };
      users.users.prometheus = {
        uid = 255;
        group = "prometheus";
      };
      users.groups.prometheus.gid = 255;
    })

    # nixos/modules/services/monitoring/grafana.nix
    (mkIf graf.enable {
      assertions = [
        {
          assertion = graf.provision.datasources.settings == null || graf.provision.datasources.path == null;
          message = "Cannot set both datasources settings and datasources path";
        }
        {
          assertion =
            graf.provision.datasources.settings == null
            || lib.all (
              d: d.type == "prometheus" -> d.access != "direct"
            ) graf.provision.datasources.settings.datasources;
          message = "For datasources of type `prometheus`, the `direct` access mode is not supported anymore (since Grafana 9.2.0)";
        }
        {
          assertion = graf.provision.dashboards.settings == null || graf.provision.dashboards.path == null;
          message = "Cannot set both dashboards settings and dashboards path";
        }
      ]
      ++ map (kind: {
        assertion =
          graf.provision.alerting.${kind}.settings == null || graf.provision.alerting.${kind}.path == null;
        message = "Cannot set both ${kind} settings and ${kind} path";
      }) (lib.attrNames graf.provision.alerting);
      environment.systemPackages = [ graf.package ];
      systemd.services.grafana = {
        description = "Grafana Service Daemon";
        wantedBy = [ "multi-user.target" ];
        after = [ "networking.target" ];
        script = "exec ${graf.package}/bin/grafana server -homepath ${graf.dataDir}";
        serviceConfig = {
          WorkingDirectory = graf.dataDir;
          User = "grafana";
          Restart = "on-failure";
        };
      };
      users.users.grafana = {
        uid = 196;
        group = "grafana";
        home = graf.dataDir;
      };
      users.groups.grafana = { };
    })
  ];
}
