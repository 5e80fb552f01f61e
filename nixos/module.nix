# services.valerix: the four Valerix services as hardened Type=notify systemd
# units, plus optional local PostgreSQL (with pgBackRest backups) or a highly
# available PostgreSQL cluster (database.ha: etcd, Patroni, HAProxy),
# Prometheus, Grafana and Jaeger.
#
# Written against nixpkgs nixos-25.11 (see nixos/README.md for the source files
# each option used here was checked against). CI evaluates it with the nixpkgs lib
# (nixos/eval/check.py); it has not been built or run under NixOS yet.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    optionalAttrs
    optionals
    types
    ;

  cfg = config.services.valerix;

  # The services, their binaries and ports (docs/CONTRACT.md).
  serviceDefs = {
    inventory = {
      binary = "inventory-service";
      port = 5002;
      usesDatabase = true;
      upstreams = [ ];
    };
    payment = {
      binary = "payment-service";
      port = 5003;
      usesDatabase = true;
      upstreams = [ ];
    };
    order = {
      binary = "order-service";
      port = 5001;
      usesDatabase = true;
      upstreams = [
        "inventory"
        "payment"
      ];
    };
    gateway = {
      binary = "api-gateway";
      port = 5000;
      usesDatabase = false;
      # /api/orders goes to the order service, /api/inventory and /health also
      # reach inventory and payment directly.
      upstreams = [
        "order"
        "inventory"
        "payment"
      ];
    };
  };

  enabledServices = lib.filterAttrs (name: _: cfg.${name}.enable) serviceDefs;

  # "host:port", with brackets around IPv6 addresses.
  hostPort =
    addr: port:
    if lib.hasInfix ":" addr then "[${addr}]:${toString port}" else "${addr}:${toString port}";

  # Where a local client reaches a service that listens on `addr`.
  connectHost =
    addr:
    if addr == "0.0.0.0" then
      "127.0.0.1"
    else if addr == "::" then
      "::1"
    else
      addr;

  localTarget = name: hostPort (connectHost cfg.${name}.listenAddress) cfg.${name}.port;

  # Each service also serves on a Unix socket in its RuntimeDirectory; the
  # services call each other through it (mode 0700 under UMask 0077: only the
  # valerix user can connect). The TCP ports stay for people and Prometheus.
  socketOf = name: "/run/valerix/${name}/http.sock";
  urlOf =
    name:
    if cfg.unixSockets && cfg.${name}.enable then
      "unix:${socketOf name}"
    else
      "http://${localTarget name}";

  localDatabaseUrl = "postgres:///valerix?host=/run/postgresql&user=valerix";

  # database.ha: three or more nodes each run etcd and Patroni (PostgreSQL); a
  # host whose services use the database reaches the leader through its own
  # HAProxy on loopback. The ports are fixed so that every host agrees on them.
  ha = cfg.database.ha;
  haNode = ha.enable && ha.nodeName != null;
  haNodeIp = ha.nodes.${ha.nodeName};
  haPgPort = 5432;
  haRestPort = 8008;
  haEtcdClientPort = 2379;
  haEtcdPeerPort = 2380;
  haProxied = ha.enable && lib.any (def: def.usesDatabase) (lib.attrValues enabledServices);
  # Written by valerix-database-url.service from database.ha.passwordFile.
  haDatabaseUrlFile = "/run/valerix-database/url";
  databaseUrlFile = if ha.enable then haDatabaseUrlFile else cfg.database.urlFile;
  # Patroni reads its passwords from files named in services.patroni.environmentFiles;
  # those are its own copies (LoadCredential=), so the originals may stay root's.
  patroniCredentials = "/run/credentials/patroni.service";

  # The tokens' files the module generates when they are missing (root's, mode
  # 0600): only these, never a path the operator chose.
  stateDir = "/var/lib/valerix";
  defaultOperatorTokenFile = "${stateDir}/operator-token";
  defaultServiceTokenFile = "${stateDir}/service-token";

  isLoopback = addr: lib.hasPrefix "127." addr || addr == "::1" || addr == "localhost";

  # The services whose own addresses another host may reach: one listening
  # beyond loopback on this host, or one served elsewhere (enable = false) that the
  # others call at its listenAddress. The gateway is not among them: it routes
  # none of the internal operations and guards the operator's with its own token.
  nonLocalServices = lib.filter (name: !isLoopback cfg.${name}.listenAddress) [
    "order"
    "inventory"
    "payment"
  ];
  servedElsewhere = lib.filter (name: !cfg.${name}.enable) nonLocalServices;

  serviceTokenFile =
    if cfg.serviceTokenFile != null then
      cfg.serviceTokenFile
    else if nonLocalServices != [ ] then
      defaultServiceTokenFile
    else
      null;

  generatedTokenFiles =
    lib.filter (f: f == defaultOperatorTokenFile || f == defaultServiceTokenFile)
      (
        optionals cfg.gateway.enable [ cfg.gateway.operatorTokenFile ]
        ++ optionals (serviceTokenFile != null) [ serviceTokenFile ]
      );

  # Sandboxing shared by every unit of this module, after nix-community/harmonia's
  # nix/module.nix. Aimed at a `systemd-analyze security` exposure of 2.0 or less
  # (what remains exposed: host network, AF_INET/AF_INET6, no IP allow list).
  hardening = {
    AmbientCapabilities = "";
    CapabilityBoundingSet = "";
    DevicePolicy = "closed";
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    NoNewPrivileges = true;
    PrivateDevices = true;
    PrivateMounts = true;
    PrivateTmp = true;
    # Peer authentication should still work: the user namespace maps the service's
    # own uid to itself, and the kernel reports that real uid to PostgreSQL.
    PrivateUsers = true;
    ProcSubset = "pid";
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHome = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProtectSystem = "strict";
    RemoveIPC = true;
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    # A filtered call fails with EPERM instead of killing the process.
    SystemCallErrorNumber = "EPERM";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
      "~@resources"
    ];
    UMask = "0077";
  };

  # Secrets go to a unit with LoadCredential= and the binary reads them from
  # <NAME>_FILE=%d/<id> (the credentials directory): never from the Nix store, never
  # in the unit's environment. One entry per variable; nixos/eval/check.py holds
  # each against the binary's --help and the unit's LoadCredential=.
  credentialsOf =
    name: def:
    optionalAttrs (def.usesDatabase && !cfg.database.createLocally) {
      DATABASE_URL_FILE = {
        id = "database-url";
        file = databaseUrlFile;
      };
    }
    // optionalAttrs (name == "gateway") {
      VALERIX_OPERATOR_TOKEN_FILE = {
        id = "operator-token";
        file = cfg.gateway.operatorTokenFile;
      };
    }
    // optionalAttrs (serviceTokenFile != null) {
      VALERIX_SERVICE_TOKEN_FILE = {
        id = "service-token";
        file = serviceTokenFile;
      };
    };

  # Each VALERIX_*, DATABASE_URL*, *_URL variable is the `env` of a clap flag of
  # the binary (`<binary> --help` lists them: VALERIX_LISTEN is --listen,
  # VALERIX_UI_DIR is --ui-dir, VALERIX_GREMLINS=true is --gremlins, ...); the
  # OTEL_* and RUST_LOG ones are read by the OpenTelemetry SDK and tracing.
  # A variable, unlike a repeated flag, can be overridden by extraEnvironment.
  serviceEnvironment =
    name: def:
    {
      VALERIX_LISTEN = hostPort cfg.${name}.listenAddress cfg.${name}.port;
      OTEL_SERVICE_NAME = def.binary;
      RUST_LOG = cfg.logLevel;
    }
    // optionalAttrs cfg.unixSockets { VALERIX_UNIX_SOCKET = socketOf name; }
    // optionalAttrs (cfg.workerThreads != null) {
      TOKIO_WORKER_THREADS = toString cfg.workerThreads;
    }
    // optionalAttrs (def.usesDatabase && cfg.database.createLocally) {
      DATABASE_URL = localDatabaseUrl;
    }
    // lib.mapAttrs (_: c: "%d/${c.id}") (credentialsOf name def)
    // optionalAttrs (name == "order") {
      INVENTORY_URL = urlOf "inventory";
      PAYMENT_URL = urlOf "payment";
    }
    // optionalAttrs (name == "gateway") {
      ORDER_URL = urlOf "order";
      INVENTORY_URL = urlOf "inventory";
      PAYMENT_URL = urlOf "payment";
      VALERIX_UI_DIR = "${cfg.package}/share/valerix/ui";
    }
    // optionalAttrs cfg.gremlins.enable { VALERIX_GREMLINS = "true"; }
    // optionalAttrs (cfg.otlpEndpoint != null) { OTEL_EXPORTER_OTLP_ENDPOINT = cfg.otlpEndpoint; }
    // cfg.${name}.extraEnvironment;

  mkServiceUnit =
    name: def:
    let
      upstreamUnits = map (u: "valerix-${u}.service") (lib.filter (u: cfg.${u}.enable) def.upstreams);
      localDb = def.usesDatabase && cfg.database.createLocally;
      remoteDb = def.usesDatabase && !cfg.database.createLocally;
      # With database.ha the URL file is written at boot (a missing credential
      # fails the start) and HAProxy carries the connections. Wants=, not
      # Requires=, on HAProxy, for the reason PostgreSQL gets Wants= below.
      haUnits = optionals (remoteDb && ha.enable) [ "valerix-database-url.service" ];
      proxyUnits = optionals (remoteDb && ha.enable) [ "haproxy.service" ];
      credentials = credentialsOf name def;
      # LoadCredential= of a missing absolute path fails the unit's start, so
      # a token the module generates is written before the unit starts.
      tokenUnits =
        optionals (lib.any (c: lib.elem c.file generatedTokenFiles) (lib.attrValues credentials))
          [
            "valerix-tokens.service"
          ];
    in
    {
      description = "Valerix ${def.binary}";
      wantedBy = [ "multi-user.target" ];
      # The listening sockets are the .socket unit's: they stay open while
      # the service restarts (a crash, `systemctl restart`, an upgrade), so
      # connections wait in the backlog instead of being refused.
      # Wants=, not Requires=, on PostgreSQL: Requires= would stop (or
      # restart) every service whenever postgresql.service is stopped or
      # restarted. The services ride a database outage out instead (503 with
      # Retry-After, the reconciler resuming by itself); After= still starts
      # them once the database and its ensure* setup are there.
      wants =
        upstreamUnits
        ++ optionals remoteDb [ "network-online.target" ]
        ++ proxyUnits
        ++ optionals localDb [ "postgresql.target" ];
      requires = tokenUnits ++ haUnits ++ [ "valerix-${name}.socket" ];
      after = [
        "network.target"
        "valerix-${name}.socket"
      ]
      ++ upstreamUnits
      ++ tokenUnits
      ++ haUnits
      ++ proxyUnits
      ++ optionals localDb [ "postgresql.target" ]
      ++ optionals remoteDb [ "network-online.target" ];
      environment = serviceEnvironment name def;
      # Keep restarting while a dependency (the database) is away.
      unitConfig.StartLimitIntervalSec = 0;
      serviceConfig =
        hardening
        // {
          Type = "notify";
          NotifyAccess = "main";
          WatchdogSec = cfg.watchdogSec;
          ExecStart = "${cfg.package}/bin/${def.binary}";
          Restart = "on-failure";
          RestartSec = "2s";
          # Room for --max-connections (4096 by default) plus the database
          # pool and sockets; the services raise their soft limit to this and
          # lower their connection cap to fit it (systemd's default soft
          # limit, 1024, would let a thousand idle sockets starve a service).
          LimitNOFILE = 8192;
          # A static user whose name matches the PostgreSQL role (peer auth).
          User = "valerix";
          Group = "valerix";
        }
        // optionalAttrs (credentials != { }) {
          LoadCredential = lib.mapAttrsToList (_: c: "${c.id}:${c.file}") credentials;
        };
    };

  # The sockets of one service, passed to it with LISTEN_FDS (the service
  # tells the TCP and the Unix socket apart by address family).
  mkSocketUnit = name: def: {
    description = "Valerix ${def.binary} sockets";
    wantedBy = [ "sockets.target" ];
    listenStreams = [
      (hostPort cfg.${name}.listenAddress cfg.${name}.port)
    ]
    ++ optionals cfg.unixSockets [ (socketOf name) ];
    socketConfig = {
      FileDescriptorName = def.binary;
      # Room for a burst of connections while the service restarts.
      Backlog = 4096;
    }
    // optionalAttrs cfg.unixSockets {
      # Only the valerix user may connect; the directory is systemd's (0755).
      SocketUser = "valerix";
      SocketGroup = "valerix";
      SocketMode = "0700";
    };
  };

  mkServiceOptions = name: def: {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to run ${def.binary} as valerix-${name}.service.";
    };
    listenAddress = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address ${def.binary} binds to (VALERIX_LISTEN).";
    };
    port = mkOption {
      type = types.port;
      default = def.port;
      description = "Port ${def.binary} listens on.";
    };
    extraEnvironment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        VALERIX_MAX_BODY_BYTES = "131072";
      };
      description = "Extra environment variables for ${def.binary}; they override the module's.";
    };
  };

  grafanaSecretsDir = "/var/lib/valerix-grafana";
  grafanaAdminPasswordFile =
    if cfg.grafana.adminPasswordFile != null then
      cfg.grafana.adminPasswordFile
    else
      "${grafanaSecretsDir}/admin-password";
  grafanaSecretKeyFile =
    if cfg.grafana.secretKeyFile != null then
      cfg.grafana.secretKeyFile
    else
      "${grafanaSecretsDir}/secret-key";
  generateGrafanaSecrets = cfg.grafana.adminPasswordFile == null || cfg.grafana.secretKeyFile == null;
  grafanaShare = "${cfg.package}/share/valerix/grafana";
  # Who owns the pgBackRest repository and runs the backup jobs.
  backupOwner = "postgres";
in
{
  options.services.valerix = {
    enable = mkEnableOption "the Valerix order, inventory and payment services and API gateway";

    package = mkOption {
      type = types.package;
      defaultText = lib.literalExpression "valerix.packages.\${system}.valerix (set by the flake's nixosModules.default)";
      description = "The Valerix package: the four service binaries, the `valerix` CLI and share/valerix.";
    };

    logLevel = mkOption {
      type = types.str;
      default = "info";
      example = "info,order_service=debug";
      description = "RUST_LOG for every service.";
    };

    watchdogSec = mkOption {
      type = types.str;
      default = "10s";
      description = "WatchdogSec= of every service unit; the services ping at half of it.";
    };

    database = {
      createLocally = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run PostgreSQL on this host with a `valerix` database owned by the `valerix` role,
          reached over the Unix socket in /run/postgresql with peer authentication.
        '';
      };
      urlFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/valerix-database-url";
        description = ''
          File holding the DATABASE_URL of an external PostgreSQL, used when
          `createLocally` is false. It is handed to the units with LoadCredential=
          (the services read DATABASE_URL_FILE=%d/database-url). Give a path as a
          string: a Nix path literal would copy the secret into the Nix store.
        '';
      };

      ha = {
        enable = mkEnableOption ''
          PostgreSQL with a synchronous standby and automatic failover, from nixpkgs'
          `services.etcd`, `services.patroni` and `services.haproxy`. Every node in `nodes`
          runs an etcd member and Patroni with PostgreSQL; a host whose Valerix services use
          the database runs HAProxy on 127.0.0.1:`proxyPort`, which sends connections to
          whichever node Patroni's REST API calls the primary. Replaces the single
          PostgreSQL: set `createLocally = false` and leave `urlFile` unset. Set the same
          `nodes` and password files on every host, database nodes and service hosts alike'';

        nodes = mkOption {
          type = types.attrsOf types.str;
          default = { };
          example = lib.literalExpression ''
            {
              db1 = "10.0.0.11";
              db2 = "10.0.0.12";
              db3 = "10.0.0.13";
            }
          '';
          description = ''
            The database nodes, name -> IPv4 address; at least three (etcd keeps working
            while a majority of its members is up, so with three, one node may fail). Each
            node listens on its address for etcd (2379 for clients, 2380 for its peers),
            PostgreSQL (5432) and Patroni's REST API (8008); these ports are opened in the
            firewall of the database nodes. The network between the hosts must be trusted:
            etcd and the REST API ask for no credentials, and PostgreSQL's traffic is not
            encrypted (its logins are, by scram-sha-256).
          '';
        };

        nodeName = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "db1";
          description = ''
            Which of `nodes` this host is (its etcd member and Patroni name). Null on a host
            that only runs Valerix services. A database node that should run no Valerix
            service sets `order.enable`, `inventory.enable`, `payment.enable` and
            `gateway.enable` to false.
          '';
        };

        passwordFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/keys/valerix-database-password";
          description = ''
            File holding the password of the `valerix` role, the same on every host: letters,
            digits and `-._~` only (it goes into the services' URL as is). On a service host,
            valerix-database-url.service writes
            `postgres://valerix:<password>@127.0.0.1:<proxyPort>/valerix` into
            ${haDatabaseUrlFile} (root's, mode 0600), which the services load with
            LoadCredential=; on a database node, valerix-database-ensure.service gives the
            role this password on the leader.
          '';
        };

        superuserPasswordFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/keys/patroni-superuser-password";
          description = ''
            File holding the password of the PostgreSQL superuser `postgres`, the same on
            every database node (Patroni's `PATRONI_SUPERUSER_PASSWORD`; pg_rewind logs in to
            the new leader with it). Needed on database nodes.
          '';
        };

        replicationPasswordFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/keys/patroni-replication-password";
          description = ''
            File holding the password of the replication role `replicator`, the same on every
            database node (Patroni's `PATRONI_REPLICATION_PASSWORD`). Needed on database nodes.
          '';
        };

        synchronousModeStrict = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Patroni's `synchronous_mode_strict`. With `synchronous_mode` (always on here) a
            commit is acknowledged once it is on the leader and its synchronous standby, and
            only that standby may be promoted. False (the default) keeps the shop writable
            when the last standby is gone too: the leader then commits on its own until a
            standby is back, and losing that node in that window loses those commits. True
            never acknowledges a commit that is on one node only: without a standby, writes
            wait (and orders get 503) until one is back. Only applied when the cluster is
            first created; change it later with `patronictl edit-config`.
          '';
        };

        scope = mkOption {
          type = types.str;
          default = "valerix";
          description = "Patroni's cluster name (`scope`), also etcd's initial cluster token.";
        };

        proxyPort = mkOption {
          type = types.port;
          default = 5433;
          description = "The loopback port of HAProxy on a service host; the services connect to 127.0.0.1:proxyPort.";
        };

        clientNetworks = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "10.0.1.0/24" ];
          description = ''
            Addresses (CIDR) of the service hosts: PostgreSQL admits the `valerix` role from
            these and from the database nodes, with scram-sha-256.
          '';
        };

        postgresqlPackage = mkOption {
          type = types.package;
          default = pkgs.postgresql_17;
          defaultText = lib.literalExpression "pkgs.postgresql_17";
          description = ''
            PostgreSQL of every database node (`services.patroni.postgresqlPackage`); the same
            major version on all of them.
          '';
        };
      };
    };

    unixSockets = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Let each service also serve on /run/valerix/<service>/http.sock (VALERIX_UNIX_SOCKET),
        and have the order service and the gateway call the other services through those
        sockets instead of loopback TCP. Only the valerix user can connect to them.
      '';
    };

    workerThreads = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      example = 1;
      description = ''
        TOKIO_WORKER_THREADS of every service; null keeps tokio's default of one per CPU.
        When the four services and PostgreSQL share a small host, a quarter of the CPUs
        each (what `valerix up` uses) cost 10-30% less CPU per order in `valerix bench`.
      '';
    };

    otlpEndpoint = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "http://127.0.0.1:4318";
      description = "OTEL_EXPORTER_OTLP_ENDPOINT for every service; null turns tracing off.";
    };

    serviceTokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/keys/valerix-service-token";
      description = ''
        File holding the token the services share (VALERIX_SERVICE_TOKEN_FILE=%d/service-token,
        handed over with LoadCredential=). With it, a service answers its internal operations
        (the saga's steps) and the operator's only to callers that send it; the order service
        and the gateway send it on their calls. Set: every service loads it. Null: the module
        turns it on by itself when the order, inventory or payment service listens beyond
        loopback or is served by another host (`<service>.enable = false` with a
        `listenAddress` that is not loopback), with a token generated once into
        ${defaultServiceTokenFile}. When the services span hosts, every host needs the
        same token: set this on each to a file holding it (from your secrets manager, not
        the Nix store). A path other than ${defaultServiceTokenFile} is never generated:
        the units fail to start while it is missing.
      '';
    };

    gremlins.enable = mkEnableOption "the fault-injection (gremlin) endpoints; for tests only";

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the ports of the enabled Valerix services in the firewall.";
    };

    prometheus.enable = mkEnableOption "a local Prometheus scraping the four services with the SLA alert rule";

    grafana = {
      enable = mkEnableOption "a local Grafana (port 3030) with the Valerix datasources, dashboard and alert provisioned";
      adminPasswordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          File with the Grafana admin password. When null, a random one is generated once
          into ${grafanaSecretsDir}/admin-password.
        '';
      };
      secretKeyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          File with Grafana's secret_key. When null, a random one is generated once
          into ${grafanaSecretsDir}/secret-key.
        '';
      };
    };

    backup = {
      enable = mkEnableOption ''
        backups of the local PostgreSQL with pgBackRest (nixpkgs' `services.pgbackrest`):
        every finished WAL segment archived into the local repository, at least every
        `archiveTimeout` seconds while there are writes (the RPO); scheduled full and
        differential backups; and, with `offsite.target`, one upload a day of the
        repository off-site'';
      repository = mkOption {
        type = types.str;
        default = "/var/lib/pgbackrest";
        description = ''
          The local pgBackRest repository (`repo1-path`), owned by the `pgbackrest` user;
          put it on another disk than PostgreSQL's data directory.
        '';
      };
      retentionFull = mkOption {
        type = types.ints.positive;
        default = 2;
        description = "Full backups kept (`repo1-retention-full`), with the WAL needed to restore them.";
      };
      archiveTimeout = mkOption {
        type = types.ints.positive;
        default = 60;
        description = ''
          PostgreSQL's `archive_timeout` in seconds: a WAL segment with writes in it is
          archived at the latest this long after it was started. Orders acknowledged in
          the last `archiveTimeout` seconds before the disk is lost can be lost.
        '';
      };
      fullSchedule = mkOption {
        type = types.str;
        default = "Sun *-*-* 23:00:00";
        description = ''
          When the full backup runs (systemd OnCalendar=, unit `pgbackrest-default-full`);
          before midnight, so the daily upload (OnCalendar=daily) carries that day's backup.
        '';
      };
      diffSchedule = mkOption {
        type = types.str;
        default = "Mon..Sat *-*-* 23:00:00";
        description = "When the differential backup runs (systemd OnCalendar=, unit `pgbackrest-default-diff`).";
      };
      offsite.target = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/mnt/offsite/valerix";
        description = ''
          Directory (a mounted remote file system or bucket) that `valerix upload-offsite`
          mirrors the repository into, once a day: `valerix-backup-upload.timer`
          (OnCalendar=daily, Persistent=true). The upload refuses a second run the same UTC
          day (state in the repository), whoever starts it. Null: no off-site copy.
        '';
      };
    };

    jaeger = {
      enable = mkEnableOption "a Jaeger all-in-one unit (OTLP on 4317/4318, UI and API on 16686, in-memory storage)";
      package = mkOption {
        type = types.nullOr types.package;
        default = null;
        description = ''
          The Jaeger v2 package (binary `jaeger`). nixpkgs 25.11 has none; the Valerix
          flake packages the upstream release binary for x86_64-linux and sets this.
        '';
      };
      configFile = mkOption {
        type = types.path;
        default = "${grafanaShare}/jaeger/valerix.yaml";
        defaultText = lib.literalExpression ''"''${config.services.valerix.package}/share/valerix/grafana/jaeger/valerix.yaml"'';
        description = ''
          Jaeger's configuration file (`--config`). The default: OTLP on 127.0.0.1:4317 and
          4318, traces in memory (at most 100000), the UI and query API on
          127.0.0.1:16686. Jaeger 2.0-2.2 cannot run without one: their built-in
          configuration reads ./cmd/jaeger/sampling-strategies.json and exits when it is
          missing (upstream issue 6338).
        '';
      };
    };
  }
  // lib.mapAttrs mkServiceOptions serviceDefs
  // {
    gateway = mkServiceOptions "gateway" serviceDefs.gateway // {
      operatorTokenFile = mkOption {
        type = types.str;
        default = defaultOperatorTokenFile;
        example = "/run/keys/valerix-operator-token";
        description = ''
          File holding the operator's bearer token: restocking and pricing, the order and
          payment lists and the gremlins answer 401 without it. The gateway gets it with
          LoadCredential= (VALERIX_OPERATOR_TOKEN_FILE=%d/operator-token), never in its
          environment or the Nix store. At the default, ${defaultOperatorTokenFile} is
          generated once (32 random bytes as hex, readable by root only) by
          valerix-tokens.service before the gateway starts; read it there to call the
          operator's routes or open the dashboard. Another path is yours to provide: the
          gateway fails to start while it is missing.
        '';
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = ha.enable || cfg.database.createLocally != (cfg.database.urlFile != null);
          message = "services.valerix.database: set either createLocally = true or urlFile, not both and not neither.";
        }
        {
          assertion = ha.enable -> !cfg.database.createLocally && cfg.database.urlFile == null;
          message = "services.valerix.database.ha replaces the single PostgreSQL: set database.createLocally = false and leave database.urlFile unset (the services reach the leader through HAProxy).";
        }
        {
          assertion = ha.enable -> !cfg.backup.enable;
          message = "services.valerix.backup backs up the single local PostgreSQL; with database.ha the module sets up no backups (pgBackRest would have to archive from whichever node leads): back the cluster up by other means and turn backup.enable off.";
        }
        {
          assertion = cfg.backup.enable -> cfg.database.createLocally;
          message = "services.valerix.backup backs up the local PostgreSQL (database.createLocally); back up an external database where it runs.";
        }
        {
          # The Nix store is readable by every user of the host.
          assertion = lib.all (f: f == null || !lib.hasPrefix "${builtins.storeDir}/" f) [
            cfg.gateway.operatorTokenFile
            cfg.serviceTokenFile
          ];
          message = "services.valerix: gateway.operatorTokenFile and serviceTokenFile must not be in the Nix store, which every user can read.";
        }
        {
          assertion = servedElsewhere == [ ] || cfg.serviceTokenFile != null;
          message = "services.valerix: ${lib.concatStringsSep ", " servedElsewhere} run on another host; set serviceTokenFile on every host to a file holding the same token (a token generated on each host would not match).";
        }
        {
          assertion = cfg.jaeger.enable -> cfg.jaeger.package != null;
          message = "services.valerix.jaeger.package is not set: nixpkgs 25.11 has no Jaeger; the Valerix flake provides one for x86_64-linux.";
        }
      ];

      users.users.valerix = {
        isSystemUser = true;
        group = "valerix";
        description = "Valerix services";
      };
      users.groups.valerix = { };

      # For operators: `valerix audit`, `valerix openapi`, ...
      environment.systemPackages = [ cfg.package ];

      systemd.sockets = lib.mapAttrs' (
        name: def: lib.nameValuePair "valerix-${name}" (mkSocketUnit name def)
      ) enabledServices;

      systemd.services =
        lib.mapAttrs' (
          name: def: lib.nameValuePair "valerix-${name}" (mkServiceUnit name def)
        ) enabledServices
        // optionalAttrs (generatedTokenFiles != [ ]) {
          # Writes only the files that are missing: a token in use stays as it is.
          valerix-tokens = {
            description = "Generate the missing Valerix tokens (once)";
            serviceConfig = hardening // {
              Type = "oneshot";
              RemainAfterExit = true;
              StateDirectory = "valerix";
              StateDirectoryMode = "0700";
            };
            script = ''
              for f in ${lib.escapeShellArgs generatedTokenFiles}; do
                if [ ! -e "$f" ]; then
                  token=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
                  printf '%s\n' "$token" > "$f.new"
                  mv "$f.new" "$f"
                fi
              done
            '';
          };
        };

      networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (
        lib.mapAttrsToList (name: _: cfg.${name}.port) enabledServices
      );
    }

    (mkIf cfg.database.createLocally {
      services.postgresql = {
        enable = true;
        ensureDatabases = [ "valerix" ];
        ensureUsers = [
          {
            name = "valerix";
            ensureDBOwnership = true;
          }
        ];
      };
    })

    (mkIf ha.enable {
      assertions =
        let
          files = {
            inherit (ha) passwordFile superuserPasswordFile replicationPasswordFile;
          };
        in
        [
          {
            assertion = lib.length (lib.attrNames ha.nodes) >= 3;
            message = "services.valerix.database.ha.nodes names ${toString (lib.length (lib.attrNames ha.nodes))} node(s): at least three are needed (etcd elects a leader only with a majority of its members, so with two, losing one stops failover).";
          }
          {
            assertion = ha.nodeName == null || ha.nodes ? ${ha.nodeName};
            message = "services.valerix.database.ha.nodeName = \"${toString ha.nodeName}\" is not one of database.ha.nodes (${lib.concatStringsSep ", " (lib.attrNames ha.nodes)}).";
          }
          {
            # Patroni's module writes "<nodeIp>:<port>" for its listen addresses.
            assertion = lib.all (ip: !lib.hasInfix ":" ip && !lib.hasInfix "/" ip) (lib.attrValues ha.nodes);
            message = "services.valerix.database.ha.nodes: give each node an IPv4 address (nixpkgs' services.patroni writes <nodeIp>:<port>).";
          }
          {
            assertion = ha.passwordFile != null;
            message = "services.valerix.database.ha.passwordFile is not set: the valerix role's password, the same file on every host.";
          }
          {
            assertion = haNode -> ha.superuserPasswordFile != null && ha.replicationPasswordFile != null;
            message = "services.valerix.database.ha: a database node needs superuserPasswordFile and replicationPasswordFile (the same files on every node).";
          }
          {
            # The Nix store is readable by every user of the host.
            assertion = lib.all (f: f == null || !lib.hasPrefix "${builtins.storeDir}/" f) (
              lib.attrValues files
            );
            message = "services.valerix.database.ha: passwordFile, superuserPasswordFile and replicationPasswordFile must not be in the Nix store, which every user can read.";
          }
        ];
    })

    (mkIf haNode {
      # nixpkgs nixos/modules/services/misc/etcd.nix (services.etcd.*: the unit gets
      # them as ETCD_* variables). v3 API: Patroni's `etcd3` below.
      services.etcd = {
        enable = true;
        name = ha.nodeName;
        listenClientUrls = [
          "http://${haNodeIp}:${toString haEtcdClientPort}"
          "http://127.0.0.1:${toString haEtcdClientPort}"
        ];
        advertiseClientUrls = [ "http://${haNodeIp}:${toString haEtcdClientPort}" ];
        listenPeerUrls = [ "http://${haNodeIp}:${toString haEtcdPeerPort}" ];
        initialAdvertisePeerUrls = [ "http://${haNodeIp}:${toString haEtcdPeerPort}" ];
        initialCluster = lib.mapAttrsToList (
          name: ip: "${name}=http://${ip}:${toString haEtcdPeerPort}"
        ) ha.nodes;
        initialClusterToken = ha.scope;
      };

      # nixpkgs nixos/modules/services/cluster/patroni/default.nix: it sets scope,
      # name, restapi.{listen,connect_address} and postgresql.{listen,connect_address,
      # data_dir,bin_dir,pgpass} in `settings` from these options, writes the YAML into
      # the store and runs `patroni <file>` after exporting each environmentFiles entry.
      services.patroni = {
        enable = true;
        inherit (ha) scope postgresqlPackage;
        name = ha.nodeName;
        nodeIp = haNodeIp;
        otherNodesIps = lib.attrValues (removeAttrs ha.nodes [ ha.nodeName ]);
        postgresqlPort = haPgPort;
        restApiPort = haRestPort;
        environmentFiles = {
          PATRONI_SUPERUSER_PASSWORD = "${patroniCredentials}/superuser-password";
          PATRONI_REPLICATION_PASSWORD = "${patroniCredentials}/replication-password";
        };
        settings = {
          # The v3 API; Patroni's `etcd:` speaks v2, which etcd 3.4+ serves only
          # with --enable-v2.
          etcd3.hosts = lib.mapAttrsToList (_: ip: "${ip}:${toString haEtcdClientPort}") ha.nodes;
          bootstrap = {
            # Written to etcd once, when the cluster is created; later changes go
            # through `patronictl edit-config`.
            dcs = {
              # A leader that stops renewing its key loses it after ttl seconds,
              # and a standby is promoted within a loop_wait after that: ~9 s
              # from a killed leader to a writable new one (Patroni's 30/10/10
              # took 24 s). Patroni requires loop_wait + 2 * retry_timeout <= ttl.
              ttl = 10;
              loop_wait = 2;
              retry_timeout = 4;
              synchronous_mode = true;
              synchronous_mode_strict = ha.synchronousModeStrict;
              postgresql = {
                # The old leader rejoins as a standby of the new one instead of
                # needing a new base backup.
                use_pg_rewind = true;
                parameters = {
                  # A standby retries fetching WAL every 500 ms instead of 5 s: a
                  # new standby (and the cluster) is ready twice as fast.
                  wal_retrieve_retry_interval = "500ms";
                };
              };
            };
            initdb = [
              { encoding = "UTF8"; }
              "data-checksums"
            ];
          };
          postgresql = {
            # Patroni talks to its own PostgreSQL over the socket, as `postgres`
            # through the ident map below; the other nodes come over TCP with passwords.
            use_unix_socket = true;
            authentication = {
              superuser.username = "postgres";
              replication.username = "replicator";
            };
            parameters.unix_socket_directories = "/run/patroni";
            pg_ident = [ "valerix-ha patroni postgres" ];
            pg_hba = [
              "local all postgres peer map=valerix-ha"
            ]
            ++ lib.concatMap (ip: [
              "host replication replicator ${ip}/32 scram-sha-256"
              # pg_rewind logs in to the new leader as the superuser.
              "host all postgres ${ip}/32 scram-sha-256"
            ]) (lib.attrValues ha.nodes)
            ++ map (net: "host valerix valerix ${net} scram-sha-256") (
              map (ip: "${ip}/32") (lib.attrValues ha.nodes) ++ ha.clientNetworks
            );
          };
        };
      };

      systemd.services.patroni = {
        # Patroni waits for etcd by itself; this only saves it the first retries.
        wants = [ "etcd.service" ];
        after = [ "etcd.service" ];
        serviceConfig = {
          LoadCredential = [
            "superuser-password:${ha.superuserPasswordFile}"
            "replication-password:${ha.replicationPasswordFile}"
          ];
          # PostgreSQL's socket directory (Patroni's user cannot create /run/postgresql).
          RuntimeDirectory = "patroni";
        };
      };

      # The role and database the services use, created (and the role's password
      # set) on whichever node leads; the others wait until they see them
      # replicated. The services apply the migrations themselves.
      systemd.services.valerix-database-ensure = {
        description = "Valerix: the valerix role and database on the PostgreSQL leader";
        wantedBy = [ "multi-user.target" ];
        wants = [ "patroni.service" ];
        after = [ "patroni.service" ];
        path = [
          ha.postgresqlPackage
          pkgs.curl
        ];
        environment.PGHOST = "/run/patroni";
        serviceConfig = hardening // {
          Type = "oneshot";
          RemainAfterExit = true;
          User = config.services.patroni.user;
          Group = config.services.patroni.group;
          LoadCredential = [ "password:${ha.passwordFile}" ];
          # The first leader is elected and the database created within a minute.
          TimeoutStartSec = "10min";
        };
        # The password reaches psql through a \set from the credential, never
        # through its arguments or environment.
        script = ''
          rest=http://${haNodeIp}:${toString haRestPort}
          while :; do
            if curl -sf -o /dev/null "$rest/primary"; then
              psql -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<'SQL'
          \set password `cat "$CREDENTIALS_DIRECTORY/password"`
          SELECT 'CREATE ROLE valerix LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'valerix') \gexec
          ALTER ROLE valerix WITH LOGIN PASSWORD :'password';
          SELECT 'CREATE DATABASE valerix OWNER valerix' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'valerix') \gexec
          SQL
              exit 0
            fi
            if curl -sf -o /dev/null "$rest/replica" \
              && [ "$(psql -U postgres -d postgres -tAc "SELECT count(*) FROM pg_database WHERE datname = 'valerix'" 2>/dev/null)" = 1 ]; then
              exit 0
            fi
            sleep 1
          done
        '';
      };

      networking.firewall.allowedTCPPorts = [
        haEtcdClientPort
        haEtcdPeerPort
        haPgPort
        haRestPort
      ];
    })

    (mkIf haProxied {
      # nixpkgs nixos/modules/services/networking/haproxy.nix: `config` goes into
      # /etc/haproxy.cfg after its own `global` section (the stats socket).
      services.haproxy = {
        enable = true;
        config = ''
          defaults
            mode tcp
            timeout connect 2s
            # Idle pooled connections: the services' pool closes them first.
            timeout client 30m
            timeout server 30m

          listen valerix-postgresql
            bind 127.0.0.1:${toString ha.proxyPort}
            # Patroni's REST API answers 200 on /primary only on the leader.
            option httpchk GET /primary
            http-check expect status 200
            # A leader that stops answering is out after 1 s, and its open
            # connections are cut, so no service keeps writing to a demoted node.
            default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
          ${lib.concatStringsSep "\n" (
            lib.mapAttrsToList (
              name: ip: "  server ${name} ${ip}:${toString haPgPort} check port ${toString haRestPort}"
            ) ha.nodes
          )}
        '';
      };

      systemd.services.valerix-database-url = {
        description = "Valerix: the services' database URL through HAProxy";
        serviceConfig = hardening // {
          Type = "oneshot";
          RemainAfterExit = true;
          RuntimeDirectory = "valerix-database";
          RuntimeDirectoryMode = "0700";
          LoadCredential = [ "password:${ha.passwordFile}" ];
        };
        script = ''
          password=$(cat "$CREDENTIALS_DIRECTORY/password")
          case "$password" in
            "" | *[!A-Za-z0-9._~-]*)
              echo "database.ha.passwordFile: use letters, digits and -._~ only (the password goes into a URL as is)" >&2
              exit 1
              ;;
          esac
          printf 'postgres://valerix:%s@127.0.0.1:${toString ha.proxyPort}/valerix\n' "$password" > ${haDatabaseUrlFile}.new
          mv ${haDatabaseUrlFile}.new ${haDatabaseUrlFile}
        '';
      };
    })

    (mkIf cfg.prometheus.enable {
      services.prometheus = {
        enable = true;
        listenAddress = lib.mkDefault "127.0.0.1";
        globalConfig = {
          # The SLA rule looks at 30 s windows: scrape and evaluate often enough.
          scrape_interval = lib.mkDefault "5s";
          evaluation_interval = lib.mkDefault "5s";
        };
        # Job names as docs/CONTRACT.md gives them.
        scrapeConfigs = lib.mapAttrsToList (name: def: {
          job_name = def.binary;
          static_configs = [ { targets = [ (localTarget name) ]; } ];
        }) enabledServices;
        # Checked with `promtool check rules` when the system is built.
        ruleFiles = [ "${grafanaShare}/prometheus/valerix-rules.yml" ];
      };
    })

    (mkIf cfg.grafana.enable {
      services.grafana = {
        enable = true;
        settings = {
          server = {
            http_addr = lib.mkDefault "127.0.0.1";
            http_port = lib.mkDefault 3030;
          };
          security = {
            admin_password = "$__file{/run/credentials/grafana.service/admin-password}";
            secret_key = "$__file{/run/credentials/grafana.service/secret-key}";
          };
        };
        provision = {
          enable = true;
          # As grafana/provisioning/datasources/valerix.yml: the dashboard and the
          # alert rule refer to these uids.
          datasources.settings = {
            apiVersion = 1;
            datasources = [
              {
                name = "Prometheus";
                type = "prometheus";
                uid = "valerix-prometheus";
                access = "proxy";
                url = "http://127.0.0.1:${toString config.services.prometheus.port}";
                isDefault = true;
                editable = false;
                jsonData = {
                  timeInterval = "5s";
                  httpMethod = "POST";
                };
              }
            ]
            ++ optionals cfg.jaeger.enable [
              {
                name = "Jaeger";
                type = "jaeger";
                uid = "valerix-jaeger";
                access = "proxy";
                url = "http://127.0.0.1:16686";
                editable = false;
              }
            ];
          };
          # As grafana/provisioning/dashboards/valerix.yml, with the path in the store.
          dashboards.settings = {
            apiVersion = 1;
            providers = [
              {
                name = "valerix";
                orgId = 1;
                folder = "Valerix";
                type = "file";
                disableDeletion = true;
                allowUiUpdates = false;
                updateIntervalSeconds = 30;
                options.path = "${grafanaShare}/dashboards";
              }
            ];
          };
          alerting.rules.path = "${grafanaShare}/provisioning/alerting/valerix-sla.yml";
        };
      };

      systemd.services.grafana = {
        requires = optionals generateGrafanaSecrets [ "valerix-grafana-secrets.service" ];
        after = optionals generateGrafanaSecrets [ "valerix-grafana-secrets.service" ];
        serviceConfig.LoadCredential = [
          "admin-password:${grafanaAdminPasswordFile}"
          "secret-key:${grafanaSecretKeyFile}"
        ];
      };

      systemd.services.valerix-grafana-secrets = mkIf generateGrafanaSecrets {
        description = "Generate Grafana's admin password and secret key for Valerix (once)";
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = ''
          for f in ${lib.escapeShellArg grafanaAdminPasswordFile} ${lib.escapeShellArg grafanaSecretKeyFile}; do
            if [ ! -e "$f" ]; then
              mkdir -p "$(dirname "$f")"
              head -c 24 /dev/urandom | base64 | tr -d '\n' > "$f"
            fi
          done
        '';
      };
    })

    (mkIf cfg.backup.enable {
      # nixpkgs' module (nixos/modules/services/backup/pgbackrest.nix, since 25.05)
      # sets up the stanza `default` for the local PostgreSQL: archive_mode,
      # archive_command (`pgbackrest --stanza=default archive-push`), the
      # `pgbackrest` user and one unit and timer per job.
      services.pgbackrest = {
        enable = true;
        repos.localhost = {
          path = cfg.backup.repository;
          retention-full = cfg.backup.retentionFull;
        };
        # A job starts with an immediate checkpoint instead of waiting up to
        # checkpoint_timeout (5 min) for the next one; at this database's size
        # the extra I/O is small, and an operator's backup starts at once.
        commands.backup.start-fast = lib.mkDefault true;
        stanzas.default.jobs = {
          full = {
            schedule = cfg.backup.fullSchedule;
            type = "full";
          };
          diff = {
            schedule = cfg.backup.diffSchedule;
            type = "diff";
          };
        };
      };
      services.postgresql.settings.archive_timeout = cfg.backup.archiveTimeout;

      # One owner for the repository: PostgreSQL's archive_command
      # (`pgbackrest archive-push`) runs as postgres inside postgresql.service
      # and writes WAL into it, while nixpkgs runs the backup jobs as the
      # pgbackrest user and makes the repository that user's home (0710).
      # pgBackRest creates what it writes 0750/0640, so two users cannot
      # share a posix repository: archiving would fail with "permission denied"
      # and WAL would pile up. As pgBackRest's user guide does on a single
      # host, the postgres user owns the repository and runs the jobs.
      users.users.pgbackrest = {
        home = lib.mkForce "/var/empty";
        createHome = lib.mkForce false;
      };
      systemd.tmpfiles.rules = [ "d ${cfg.backup.repository} 0750 ${backupOwner} ${backupOwner} - -" ];
      systemd.services =
        lib.mapAttrs' (
          job: _:
          lib.nameValuePair "pgbackrest-default-${job}" {
            serviceConfig = {
              User = lib.mkForce backupOwner;
              Group = lib.mkForce backupOwner;
            };
          }
        ) config.services.pgbackrest.stanzas.default.jobs
        // {
          # archive-push refuses every WAL segment until the stanza exists, and
          # nixpkgs creates it only in the jobs' ExecStartPre (the first one may be
          # days away): created as soon as PostgreSQL runs. Idempotent.
          valerix-backup-stanza = {
            description = "Valerix: create the pgBackRest stanza for WAL archiving";
            wantedBy = [ "multi-user.target" ];
            wants = [ "postgresql.target" ];
            after = [ "postgresql.target" ];
            serviceConfig = hardening // {
              Type = "oneshot";
              RemainAfterExit = true;
              User = backupOwner;
              Group = backupOwner;
              ExecStart = "${lib.getExe pkgs.pgbackrest} --stanza=default stanza-create";
              ReadWritePaths = [ cfg.backup.repository ];
              UMask = "0027";
              # pgBackRest talks to PostgreSQL through its socket as the postgres user.
              PrivateUsers = false;
            };
          };
          # nixpkgs' postgresql.service (nixos/modules/services/databases/postgresql.nix)
          # has ProtectSystem=strict with only its data directory writable; the
          # archive_command it runs must reach the repository.
          postgresql.serviceConfig.ReadWritePaths = [ cfg.backup.repository ];
        };
    })

    (mkIf (cfg.backup.enable && cfg.backup.offsite.target != null) {
      # A mirror of the repository, not pgBackRest's second repository: that one
      # would get every WAL segment as it is archived, far more than the
      # provider's one call a day.
      systemd.services.valerix-backup-upload = {
        description = "Valerix: upload the pgBackRest repository off-site (at most once a day)";
        after = [
          "pgbackrest-default-full.service"
          "pgbackrest-default-diff.service"
        ];
        serviceConfig = hardening // {
          Type = "oneshot";
          # The repository's owner (see backupOwner).
          User = backupOwner;
          Group = backupOwner;
          ExecStart = "${cfg.package}/bin/valerix upload-offsite --repo ${cfg.backup.repository} --target ${cfg.backup.offsite.target}";
          # Exit 3: today's upload already ran. The guard did its job; not a failure.
          SuccessExitStatus = "3";
          # "-": a target that is not mounted right now fails the upload
          # with its own message, not the whole unit with 226/NAMESPACE.
          ReadWritePaths = [
            cfg.backup.repository
            "-${cfg.backup.offsite.target}"
          ];
          UMask = "0027";
        };
      };
      systemd.timers.valerix-backup-upload = {
        description = "Valerix: daily off-site upload of the backups";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = "daily";
          # A day missed while the host was off is caught up at boot; the guard
          # still allows only one upload per UTC day.
          Persistent = true;
        };
      };
    })

    (mkIf cfg.jaeger.enable {
      systemd.services.valerix-jaeger = {
        description = "Jaeger all-in-one for Valerix traces";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig = hardening // {
          ExecStart = "${cfg.jaeger.package}/bin/jaeger --config=${cfg.jaeger.configFile}";
          DynamicUser = true;
          Restart = "on-failure";
          RestartSec = "2s";
        };
      };
    })
  ]);
}
