# Valerix on an existing NixOS host: import this file into the host's
# configuration (with the flake's nixosModules.default) and rebuild. It sets
# only `services.valerix` and the firewall port of the public edge; the host's
# own settings (nixpkgs.hostPlatform, system.stateVersion, boot loader, file
# systems) stay the host's. nixos/example/host.nix is a whole host around it.
{
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
