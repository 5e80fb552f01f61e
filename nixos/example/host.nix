# An example host: `nixos-rebuild build --flake .#example`.
# The whole stack on one machine; only the gateway is reachable from outside.
{
  nixpkgs.hostPlatform = "x86_64-linux";
  system.stateVersion = "25.11";

  boot.loader.grub.device = "nodev";
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };

  services.valerix = {
    enable = true;
    # The public edge. The operator's token (restocking, the order list, the
    # dashboard's operator view) is generated on first start into
    # /var/lib/valerix/operator-token (gateway.operatorTokenFile). The other
    # services stay on loopback and Unix sockets: no service token needed.
    gateway.listenAddress = "0.0.0.0";
    # Traces to the local Jaeger (OTLP over HTTP).
    otlpEndpoint = "http://127.0.0.1:4318";
    prometheus.enable = true;
    grafana.enable = true;
    jaeger.enable = true;
    # pgBackRest: WAL archived at least every minute into /var/lib/pgbackrest, a full
    # backup on Sundays and a differential one the other days, and the repository
    # copied to the (mounted) off-site directory once a day.
    backup = {
      enable = true;
      offsite.target = "/mnt/offsite/valerix";
    };
  };

  networking.firewall.allowedTCPPorts = [ 5000 ];
}
