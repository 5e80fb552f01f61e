# services.valerix.database.ha on three database nodes (etcd + Patroni with
# PostgreSQL each) and an `app` node running the four services through HAProxy.
# Under a steady writer the leader's node is crashed (a power cut, not a clean
# stop): a synchronous standby takes over, orders are confirmed again, the old
# leader comes back as a standby (pg_rewind), and every order the writer got a
# 201/202 for is still there and settles, with a clean `valerix audit` and no
# service restarted by the failover.
{ pkgs, valerix }:

let
  # nixos/lib/testing/network.nix numbers the nodes in name order from 1 on
  # 192.168.1.0/24: app is .1, db1 .2, db2 .3, db3 .4.
  appAddress = "192.168.1.1";
  dbNodes = {
    db1 = "192.168.1.2";
    db2 = "192.168.1.3";
    db3 = "192.168.1.4";
  };

  # Test-only passwords. Through environment.etc they also land in the Nix
  # store; a real host points the options at its secrets manager's files.
  secret = text: {
    inherit text;
    mode = "0400";
  };
  secrets = {
    "valerix/database-password" = secret "valerix-ha-test";
    "valerix/superuser-password" = secret "superuser-ha-test";
    "valerix/replication-password" = secret "replication-ha-test";
  };

  ha = {
    enable = true;
    nodes = dbNodes;
    passwordFile = "/etc/valerix/database-password";
    superuserPasswordFile = "/etc/valerix/superuser-password";
    replicationPasswordFile = "/etc/valerix/replication-password";
    clientNetworks = [ "${appAddress}/32" ];
  };

  dbNode = name: {
    imports = [ ../module.nix ];
    services.valerix = {
      enable = true;
      package = valerix;
      database = {
        createLocally = false;
        ha = ha // {
          nodeName = name;
        };
      };
      # Database only: the services run on `app`.
      order.enable = false;
      inventory.enable = false;
      payment.enable = false;
      gateway.enable = false;
    };
    environment.etc = secrets;
  };

  script =
    name: text:
    pkgs.writeShellApplication {
      inherit name text;
      runtimeInputs = [
        pkgs.curl
        pkgs.jq
        pkgs.postgresql
        valerix
      ];
    };

  helpers = [
    # Patroni's view of the cluster from the first node that answers.
    (script "ha-cluster" ''
      for ip in ${toString (builtins.attrValues dbNodes)}; do
        if curl -sf -m 2 "http://$ip:8008/cluster"; then exit 0; fi
      done
      exit 1
    '')
    (script "ha-leader" ''
      ha-cluster | jq -er '.members[] | select(.role == "leader") | .name'
    '')
    (script "ha-sync-standby" ''
      ha-cluster | jq -er '.members[] | select(.role == "sync_standby") | .name'
    '')
    # "<role> <state>" of one member, e.g. "sync_standby streaming".
    (script "ha-member" ''
      ha-cluster | jq -er --arg n "$1" '.members[] | select(.name == $n) | "\(.role) \(.state)"'
    '')
    # The services' own URL: the valerix role through HAProxy to the leader.
    (script "sql" ''
      psql "$(cat /run/valerix-database/url)" -v ON_ERROR_STOP=1 -tA -c "$1"
    '')
    (script "seed-products" ''
      sql "INSERT INTO inventory (product_id, name, price_cents, stock)
           VALUES ('PROD-1', 'Valerix widget', 1999, 100000)
           ON CONFLICT (product_id) DO NOTHING"
    '')
    # One order through the gateway, answered 201 and CONFIRMED.
    (script "post-order-confirmed" ''
      out=$(curl -s -m 20 -w '\n%{http_code}' -X POST http://127.0.0.1:5000/api/orders \
        -H 'content-type: application/json' -d '{"product_id":"PROD-1","quantity":1}')
      [ "$(printf '%s\n' "$out" | tail -n 1)" = 201 ]
      printf '%s\n' "$out" | head -n -1 | jq -e '.status == "CONFIRMED"' >/dev/null
    '')
    # Sequential orders through the gateway; the ids of acknowledged ones (201
    # or 202) go to /tmp/acked. /tmp/drive-orders.done marks the end.
    (script "drive-orders" ''
      touch /tmp/acked
      for _ in $(seq 1 "$1"); do
        out=$(curl -s -m 20 -w '\n%{http_code}' -X POST http://127.0.0.1:5000/api/orders \
          -H 'content-type: application/json' -d '{"product_id":"PROD-1","quantity":1}') || true
        code=$(printf '%s\n' "$out" | tail -n 1)
        if [ "$code" = 201 ] || [ "$code" = 202 ]; then
          printf '%s\n' "$out" | head -n -1 | jq -r .id >> /tmp/acked
        fi
        sleep 0.1
      done
      touch /tmp/drive-orders.done
    '')
    # Fails while an acknowledged order is missing or not final.
    (script "check-acked" ''
      while read -r id; do
        status=$(curl -sf "http://127.0.0.1:5001/orders/$id" | jq -r .status)
        case "$status" in
          CONFIRMED | FAILED) ;;
          *)
            echo "order $id is '$status'"
            exit 1
            ;;
        esac
      done < /tmp/acked
    '')
    (script "orders-with-status" ''
      sql "SELECT count(*) FROM orders WHERE status LIKE '$1'"
    '')
    (script "audit" ''
      valerix audit --database-url "$(cat /run/valerix-database/url)"
    '')
  ];
in
pkgs.testers.runNixOSTest {
  name = "valerix-ha";

  nodes = {
    app = {
      imports = [ ../module.nix ];
      virtualisation.memorySize = 2048;
      services.valerix = {
        enable = true;
        package = valerix;
        database = {
          createLocally = false;
          inherit ha;
        };
      };
      environment.etc = secrets;
      environment.systemPackages = helpers;
    };
    db1 = dbNode "db1";
    db2 = dbNode "db2";
    db3 = dbNode "db3";
  };

  testScript = ''
    import time

    db_nodes = {"db1": db1, "db2": db2, "db3": db3}
    services = ["valerix-inventory", "valerix-payment", "valerix-order", "valerix-gateway"]

    start_all()

    with subtest("three nodes elect a leader with a synchronous standby, the role and database exist"):
        for node in db_nodes.values():
            node.wait_for_unit("etcd.service")
            node.wait_for_unit("patroni.service")
        app.wait_until_succeeds("ha-leader", timeout=300)
        app.wait_until_succeeds("ha-sync-standby", timeout=300)
        for node in db_nodes.values():
            node.wait_for_unit("valerix-database-ensure.service", timeout=600)

    with subtest("the services on app reach the leader through HAProxy"):
        app.wait_for_unit("haproxy.service")
        for service in services:
            app.wait_for_unit(f"{service}.service")
        app.wait_until_succeeds("seed-products", timeout=120)
        app.wait_until_succeeds("post-order-confirmed", timeout=120)
        # The services may have restarted while the cluster was being formed;
        # from here on they must not.
        restarts = {s: app.get_unit_property(f"{s}.service", "NRestarts") for s in services}

    with subtest("the leader's node crashes under a steady writer, orders are confirmed again"):
        app.succeed("drive-orders 600 >/dev/null 2>&1 &")
        app.wait_until_succeeds("test $(wc -l < /tmp/acked) -ge 30", timeout=300)
        old_leader = app.succeed("ha-leader").strip()
        standby = app.succeed("ha-sync-standby").strip()
        crashed_at = time.monotonic()
        db_nodes[old_leader].crash()
        # Only the synchronous standby may be promoted: it holds every commit.
        app.wait_until_succeeds(f"test \"$(ha-leader)\" = {standby}", timeout=120)
        app.wait_until_succeeds("post-order-confirmed", timeout=120)
        print(f"failover: orders confirmed again {time.monotonic() - crashed_at:.1f} s after {old_leader} crashed")

    with subtest("the old leader comes back as a standby"):
        db_nodes[old_leader].start()
        db_nodes[old_leader].wait_for_unit("patroni.service")
        app.wait_until_succeeds(
            f"ha-member {old_leader} | grep -Ex '(replica|sync_standby) (streaming|running)'",
            timeout=300,
        )

    with subtest("no acknowledged order is lost, every one settles, the audit is clean"):
        app.wait_for_file("/tmp/drive-orders.done", timeout=900)
        acked = int(app.succeed("wc -l < /tmp/acked"))
        print(f"failover: {acked} acknowledged")
        app.wait_until_succeeds("check-acked", timeout=600)
        app.wait_until_succeeds("test $(orders-with-status 'PENDING%') -eq 0", timeout=600)
        assert int(app.succeed("orders-with-status CONFIRMED")) > 0
        app.succeed("audit")
        # The services rode the failover out: 503s, not restarts.
        for service in services:
            now = app.get_unit_property(f"{service}.service", "NRestarts")
            assert now == restarts[service], f"{service} restarted during the failover: NRestarts {restarts[service]} -> {now}"
  '';
}
