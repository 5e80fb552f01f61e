# PostgreSQL on `db`, the four services on `app` (createLocally = false, the URL
# from a credential file), load from `client`. Mid-load `db`'s firewall drops
# every packet to PostgreSQL (IPv4 and IPv6) for 30 s, then lets them through
# again; afterwards every order the client got a 201/202 for must be CONFIRMED
# or FAILED, none may stay pending, and `valerix audit` on the database must be
# clean.
{ pkgs, valerix }:

let
  # Test-only credentials; a real host keeps the URL file out of the Nix store.
  dbPassword = "valerix-multinode-test";
  databaseUrl = "postgres://valerix:${dbPassword}@db:5432/valerix";
  # The services' shared token, the same file on `app` and `client`. Through
  # environment.etc it also lands in the Nix store: test data only; a real host
  # points serviceTokenFile at its secrets manager's file.
  serviceToken = "valerix-multinode-service-token";
  serviceTokenFile = {
    text = serviceToken;
    mode = "0400";
  };

  script =
    name: text:
    pkgs.writeShellApplication {
      inherit name text;
      runtimeInputs = [
        pkgs.curl
        pkgs.jq
      ];
    };

  # Sequential orders through the gateway; the ids of acknowledged orders
  # (201 or 202) go to /tmp/acked. /tmp/drive-orders.done marks the end.
  driveOrders = script "drive-orders" ''
    touch /tmp/acked
    for _ in $(seq 1 "$1"); do
      out=$(curl -s -m 20 -w '\n%{http_code}' -X POST http://app:5000/api/orders \
        -H 'content-type: application/json' -d '{"product_id":"PROD-1","quantity":1}') || true
      code=$(printf '%s\n' "$out" | tail -n 1)
      if [ "$code" = 201 ] || [ "$code" = 202 ]; then
        printf '%s\n' "$out" | head -n -1 | jq -r .id >> /tmp/acked
      fi
      sleep 0.2
    done
    touch /tmp/drive-orders.done
  '';

  # Fails while an acknowledged order is missing or not final.
  checkAcked = script "check-acked" ''
    while read -r id; do
      status=$(curl -sf "http://app:5001/orders/$id" | jq -r .status)
      case "$status" in
        CONFIRMED | FAILED) ;;
        *)
          echo "order $id is '$status'"
          exit 1
          ;;
      esac
    done < /tmp/acked
  '';

  # Only the HTTP status code of a curl call (its arguments), e.g. 401.
  httpStatus = script "http-status" ''
    curl -s -o /dev/null -m 30 -w '%{http_code}' "$@"
  '';

  seedProducts = script "seed-products" ''
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -d valerix -c \
      "INSERT INTO inventory (product_id, name, price_cents, stock)
       VALUES ('PROD-1', 'Valerix widget', 1999, 100000)
       ON CONFLICT (product_id) DO NOTHING"
  '';

  ordersWithStatus = script "orders-with-status" ''
    runuser -u postgres -- psql -tA -d valerix -c \
      "SELECT count(*) FROM orders WHERE status LIKE '$1'"
  '';
in
pkgs.testers.runNixOSTest {
  name = "valerix-multinode";

  nodes = {
    db = {
      services.postgresql = {
        enable = true;
        enableTCPIP = true;
        # Prepended to the module's defaults (local peer, md5 on loopback). The
        # test network gives every node 192.168.1.N and 2001:db8:1::N and writes
        # both into /etc/hosts (nixpkgs nixos/lib/testing/network.nix); glibc
        # returns the IPv6 address first, so `db` is reached over IPv6: both
        # subnets need a line.
        authentication = ''
          host valerix valerix 192.168.1.0/24 scram-sha-256
          host valerix valerix 2001:db8:1::/64 scram-sha-256
        '';
        ensureDatabases = [ "valerix" ];
        ensureUsers = [
          {
            name = "valerix";
            ensureDBOwnership = true;
          }
        ];
        # Runs once, before the ensure* statements: the role gets a password.
        initialScript = pkgs.writeText "valerix-role.sql" ''
          CREATE ROLE valerix WITH LOGIN PASSWORD '${dbPassword}';
        '';
      };
      networking.firewall.allowedTCPPorts = [ 5432 ];
      environment.systemPackages = [
        seedProducts
        ordersWithStatus
      ];
    };

    app = {
      imports = [ ../module.nix ];
      services.valerix = {
        enable = true;
        package = valerix;
        database = {
          createLocally = false;
          urlFile = "${pkgs.writeText "valerix-database-url" databaseUrl}";
        };
        gateway.listenAddress = "0.0.0.0";
        # Beyond loopback: the module would turn the service token on by itself
        # (generated on `app`); given as the file every host shares.
        order.listenAddress = "0.0.0.0";
        serviceTokenFile = "/etc/valerix/service-token";
        openFirewall = true;
      };
      environment.etc."valerix/service-token" = serviceTokenFile;
      environment.systemPackages = [ httpStatus ];
    };

    client = {
      environment.systemPackages = [
        pkgs.curl
        valerix
        driveOrders
        checkAcked
        httpStatus
      ];
      environment.etc."valerix/service-token" = serviceTokenFile;
    };
  };

  testScript = ''
    services = ["valerix-inventory", "valerix-payment", "valerix-order", "valerix-gateway"]

    start_all()

    with subtest("db and the services on app come up"):
        db.wait_for_unit("postgresql.target")
        for service in services:
            app.wait_for_unit(f"{service}.service")
        db.succeed("seed-products")
        client.wait_until_succeeds("curl -s -o /dev/null http://app:5000/", timeout=120)

    with subtest("across hosts the services' own operator and internal operations need the service token"):
        bearer = "-H \"Authorization: Bearer $(cat /etc/valerix/service-token)\""
        code = client.succeed("http-status http://app:5001/orders").strip()
        assert code == "401", f"order list on app:5001 without the service token: {code}"
        code = client.succeed(f"http-status {bearer} http://app:5001/orders").strip()
        assert code == "200", f"order list on app:5001 with the service token: {code}"
        code = client.succeed(
            "http-status -X POST http://app:5000/api/payments/refund"
            + " -H 'content-type: application/json' -d '{\"order_id\":\"x\"}'"
        ).strip()
        assert code == "404", f"anonymous refund through the gateway: {code}"
        code = client.succeed("http-status http://app:5000/api/orders").strip()
        assert code == "401", f"order list through the gateway without the operator token: {code}"
        # The gateway passes the operator's call on with the service token.
        operator = "-H \"Authorization: Bearer $(cat /var/lib/valerix/operator-token)\""
        code = app.succeed(f"http-status {operator} http://127.0.0.1:5000/api/orders").strip()
        assert code == "200", f"order list through the gateway with the operator token: {code}"

    with subtest("orders keep coming while db's firewall cuts PostgreSQL off, then heals"):
        client.succeed("drive-orders 150 >/dev/null 2>&1 &")
        client.wait_until_succeeds("test $(wc -l < /tmp/acked) -ge 20", timeout=300)
        # Inserted ahead of the NixOS firewall's own chain: established
        # connections stall too, as on a real partition.
        db.succeed(
            "iptables -I INPUT -p tcp --dport 5432 -j DROP",
            "ip6tables -I INPUT -p tcp --dport 5432 -j DROP",
        )
        client.sleep(30)
        db.succeed(
            "iptables -D INPUT -p tcp --dport 5432 -j DROP",
            "ip6tables -D INPUT -p tcp --dport 5432 -j DROP",
        )
        client.wait_for_file("/tmp/drive-orders.done", timeout=900)

    with subtest("every acknowledged order settles, none is pending, the audit is clean"):
        for service in services:
            app.wait_for_unit(f"{service}.service")
        client.wait_until_succeeds("check-acked", timeout=600)
        db.wait_until_succeeds("test $(orders-with-status 'PENDING%') -eq 0", timeout=600)
        assert int(db.succeed("orders-with-status CONFIRMED")) > 0
        client.succeed("valerix audit --database-url '${databaseUrl}'")
  '';
}
