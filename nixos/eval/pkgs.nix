# Stand-ins for the nixpkgs packages and builders that flake.nix, nixos/module.nix
# and the VM tests use, for evaluating them with the nixpkgs `lib` alone
# (nixos/eval/eval.nix). Nothing is built: a package is an attribute set that
# `lib.types.package` accepts (type = "derivation", an outPath), and `_eval` says
# what the evaluation checks need to know about it: the commands it puts in
# bin/, and for the builders the arguments they were given.
#
# The command lists name what each package installs in bin/, as far as the
# tests and the module call them; a command missing here makes the check fail,
# never pass, so a gap shows up as an error to look into.
{
  lib,
  # The binaries of the Cargo workspace (read from its Cargo.toml files by
  # nixos/eval/check.py): what buildRustPackage installs in $out/bin.
  workspaceBins,
  # The repository's top-level entries, name -> "directory" or "regular":
  # buildRustPackage reports which of them its `src` lets into the build.
  repoEntries ? { },
}:

let
  storePath =
    name: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";

  fake = name: bins: extra: {
    type = "derivation";
    inherit name;
    outPath = storePath name;
    drvPath = storePath "${name}.drv";
    meta = lib.optionalAttrs (bins != [ ]) { mainProgram = builtins.head bins; };
    _eval = {
      inherit name bins;
      kind = "package";
    }
    // extra;
  };

  pkg = name: bins: fake name bins { };

  # A generated file or script: its store path carries its description, so that
  # nixos/eval/check.py can read what a unit or an app points at (the path is
  # all that is left of it in the evaluated configuration).
  described =
    name: bins: extra:
    let
      drv = fake name bins extra;
    in
    drv // { outPath = "/nix/store/eval:" + builtins.toJSON drv._eval; };

  # coreutils-full: everything GNU coreutils installs.
  coreutilsBins = lib.splitString " " (
    "[ b2sum base32 base64 basename basenc cat chcon chgrp chmod chown chroot cksum comm cp"
    + " csplit cut date dd df dir dircolors dirname du echo env expand expr factor false"
    + " fmt fold groups head hostid id install join kill link ln logname ls md5sum mkdir"
    + " mkfifo mknod mktemp mv nice nl nohup nproc numfmt od paste pathchk pinky pr"
    + " printenv printf ptx pwd readlink realpath rm rmdir runcon seq sha1sum sha224sum"
    + " sha256sum sha384sum sha512sum shred shuf sleep sort split stat stdbuf stty sum"
    + " sync tac tail tee test timeout touch tr true truncate tsort tty uname unexpand"
    + " uniq unlink users vdir wc who whoami yes"
  );

  postgresqlBins = [
    "clusterdb"
    "createdb"
    "createuser"
    "dropdb"
    "dropuser"
    "initdb"
    "pg_ctl"
    "pg_dump"
    "pg_dumpall"
    "pg_isready"
    "pg_restore"
    "postgres"
    "psql"
    "vacuumdb"
  ];

  prometheus = fake "prometheus" [ "prometheus" ] { } // {
    cli = pkg "prometheus-cli" [ "promtool" ];
  };
in
{
  inherit lib;

  stdenv.hostPlatform.system = "x86_64-linux";

  # nixos/modules/config/system-path.nix: corePackageNames and defaultPackageNames.
  acl = pkg "acl" [
    "chacl"
    "getfacl"
    "setfacl"
  ];
  attr = pkg "attr" [
    "attr"
    "getfattr"
    "setfattr"
  ];
  bashInteractive = pkg "bash-interactive" [
    "bash"
    "sh"
  ];
  bzip2 = pkg "bzip2" [
    "bzip2"
    "bunzip2"
    "bzcat"
  ];
  coreutils-full = pkg "coreutils-full" coreutilsBins;
  coreutils = pkg "coreutils" coreutilsBins;
  cpio = pkg "cpio" [ "cpio" ];
  curl = pkg "curl" [ "curl" ];
  diffutils = pkg "diffutils" [
    "cmp"
    "diff"
    "diff3"
    "sdiff"
  ];
  findutils = pkg "findutils" [
    "find"
    "xargs"
  ];
  gawk = pkg "gawk" [
    "awk"
    "gawk"
  ];
  getent = pkg "getent" [ "getent" ];
  getconf = pkg "getconf" [ "getconf" ];
  gnugrep = pkg "gnugrep" [
    "egrep"
    "fgrep"
    "grep"
  ];
  gnupatch = pkg "gnupatch" [ "patch" ];
  gnused = pkg "gnused" [ "sed" ];
  gnutar = pkg "gnutar" [ "tar" ];
  gzip = pkg "gzip" [
    "gunzip"
    "gzip"
    "zcat"
  ];
  xz = pkg "xz" [
    "unxz"
    "xz"
    "xzcat"
  ];
  less = pkg "less" [ "less" ];
  libcap = pkg "libcap" [
    "capsh"
    "getcap"
    "setcap"
  ];
  ncurses = pkg "ncurses" [
    "clear"
    "reset"
    "tput"
  ];
  netcat = pkg "netcat" [ "nc" ];
  mkpasswd = pkg "mkpasswd" [ "mkpasswd" ];
  procps = pkg "procps" [
    "free"
    "pgrep"
    "pidof"
    "pkill"
    "ps"
    "sysctl"
    "top"
    "uptime"
    "watch"
  ];
  su = pkg "su" [ "su" ];
  time = pkg "time" [ "time" ];
  util-linux = pkg "util-linux" [
    "findmnt"
    "flock"
    "logger"
    "lsblk"
    "mount"
    "nsenter"
    "runuser"
    "setpriv"
    "umount"
    "unshare"
  ];
  which = pkg "which" [ "which" ];
  zstd = pkg "zstd" [
    "unzstd"
    "zstd"
    "zstdcat"
  ];
  perl = pkg "perl" [ "perl" ];
  rsync = pkg "rsync" [ "rsync" ];
  strace = pkg "strace" [ "strace" ];

  # nixos/modules/system/boot/systemd.nix puts systemd itself in systemPackages.
  systemd = pkg "systemd" [
    "busctl"
    "journalctl"
    "loginctl"
    "systemctl"
    "systemd-analyze"
    "systemd-run"
  ];
  # networking.firewall.package (iptables unless nftables is on).
  iptables = pkg "iptables" [
    "ip6tables"
    "ip6tables-save"
    "iptables"
    "iptables-save"
  ];

  jq = pkg "jq" [ "jq" ];
  # database.ha: nixpkgs' services.etcd, services.patroni, services.haproxy.
  etcd = pkg "etcd" [
    "etcd"
    "etcdctl"
    "etcdutl"
  ];
  patroni = pkg "patroni" [
    "patroni"
    "patronictl"
  ];
  haproxy = pkg "haproxy" [ "haproxy" ];
  pgbackrest = pkg "pgbackrest" [ "pgbackrest" ];
  postgresql = pkg "postgresql" postgresqlBins;
  postgresql_17 = pkg "postgresql-17" postgresqlBins;
  inherit prometheus;
  grafana = pkg "grafana" [
    "grafana"
    "grafana-cli"
    "grafana-server"
  ];
  cargo = pkg "cargo" [ "cargo" ];
  rustc = pkg "rustc" [ "rustc" ];
  clippy = pkg "clippy" [
    "cargo-clippy"
    "clippy-driver"
  ];
  rustfmt = pkg "rustfmt" [
    "cargo-fmt"
    "rustfmt"
  ];
  sqlx-cli = pkg "sqlx-cli" [
    "cargo-sqlx"
    "sqlx"
  ];
  just = pkg "just" [ "just" ];
  nodejs = pkg "nodejs" [
    "node"
    "npm"
    "npx"
  ];
  chromium = pkg "chromium" [ "chromium" ];
  nixfmt = pkg "nixfmt" [ "nixfmt" ];
  deadnix = pkg "deadnix" [ "deadnix" ];
  python3 = pkg "python3" [
    "python3"
    "python"
  ];
  nix = pkg "nix" [
    "nix"
    "nix-instantiate"
  ];

  fetchurl = args: fake (baseNameOf args.url) [ ] { inherit (args) url; };

  # pkgs/pkgs-lib/formats.nix: yaml's type is any JSON value (YAML 1.2 is a
  # superset); `generate` keeps the value for the checks to read.
  formats.yaml =
    _:
    let
      valueType =
        lib.types.nullOr (
          lib.types.oneOf [
            lib.types.bool
            lib.types.int
            lib.types.float
            lib.types.str
            lib.types.path
            (lib.types.attrsOf valueType)
            (lib.types.listOf valueType)
          ]
        )
        // {
          description = "YAML value";
        };
    in
    {
      type = valueType;
      generate =
        name: value:
        described name [ ] {
          kind = "yaml";
          inherit value;
        };
    };

  writeText =
    name: text:
    described name [ ] {
      kind = "text";
      inherit text;
    };

  writeShellApplication =
    args:
    described args.name [ args.name ] {
      kind = "shellApplication";
      inherit (args) text;
      runtimeInputs = map (p: p._eval) (args.runtimeInputs or [ ]);
    };

  runCommand =
    name: _env: _script:
    fake name [ ] { kind = "runCommand"; };

  mkShell =
    args:
    fake "shell" [ ] {
      kind = "shell";
      packages = map (p: p._eval) (args.packages or [ ]);
    };

  # What the VM test files hand to the driver, returned as given.
  testers.runNixOSTest = args: {
    _eval.kind = "nixosTest";
    inherit (args) name nodes testScript;
  };

  rustPlatform.buildRustPackage =
    args:
    fake "${args.pname}-${args.version}" workspaceBins {
      kind = "rustPackage";
      inherit (args) pname version postInstall;
      dontUseCargoParallelTests = args.dontUseCargoParallelTests or false;
      checkFlags = args.checkFlags or [ ];
      # A lib.fileset.toSource (cleanSourceWith) result keeps its filter and
      # root: asking them copies nothing to the store.
      srcIncludes = lib.mapAttrs (
        name: type: args.src.filter "${toString args.src.origSrc}/${name}" type
      ) repoEntries;
    };

  # The binaries an installPhase puts into $out/bin.
  stdenvNoCC.mkDerivation =
    args:
    fake "${args.pname}-${args.version}" (lib.concatLists (
      builtins.filter builtins.isList (builtins.split "\\$out/bin/([A-Za-z0-9._-]+)" args.installPhase)
    )) { kind = "mkDerivation"; };
}
