# The whole stack on one VM, faults included: every unit active (Type=notify),
# an order CONFIRMED through the gateway, the 3 s inventory gremlin -> orders
# PENDING_INVENTORY and the SLA alert firing in Prometheus, the reconciler
# confirming them once the gremlin is lifted, Grafana's provisioned dashboard and
# alert, traces of the four services in Jaeger, a watchdog restart after SIGSTOP,
# `systemd-analyze security` <= 2.0 for every unit, and a clean `valerix audit`.
{
  pkgs,
  valerix,
  jaeger,
}:

let
  # The provisioned dashboard and alert rule, as the package ships them.
  dashboardUid = (pkgs.lib.importJSON ../../grafana/dashboards/valerix.json).uid;
  alertRuleUid = "valerix-sla-breach";

  script =
    name: text:
    pkgs.writeShellApplication {
      inherit name text;
      runtimeInputs = [
        pkgs.curl
        pkgs.jq
      ];
      # jq programs in single quotes use $variables on purpose.
      excludeShellChecks = [ "SC2016" ];
    };

  helpers = [
    # The body, then the HTTP status code on a line of its own.
    (script "post-order" ''
      curl -s -m 30 -w '\n%{http_code}' -X POST http://localhost:5000/api/orders \
        -H 'content-type: application/json' -d '{"product_id":"PROD-1","quantity":1}'
    '')
    # Only the HTTP status code of a curl call (its arguments), e.g. 404.
    (script "http-status" ''
      curl -s -o /dev/null -m 30 -w '%{http_code}' "$@"
    '')
    (script "order-status" ''
      curl -sf "http://localhost:5001/orders/$1" | jq -r .status
    '')
    # One order through the gateway while the gremlin holds inventory for 3 s (the
    # order service answers 202 after its call bound), then: is the SLA alert firing?
    # Retried by wait_until_succeeds, every attempt puts a fresh slow order into
    # the rule's 30 s window, so the condition holds until Prometheus sees it.
    (script "slow-order-then-alert-firing" ''
      curl -s -o /dev/null -m 30 -X POST http://localhost:5000/api/orders \
        -H 'content-type: application/json' -d '{"product_id":"PROD-1","quantity":1}' || true
      alert-firing
    '')
    (script "gremlin-on" ''
      curl -sf -X POST http://localhost:5002/gremlin/latency \
        -H 'content-type: application/json' -d '{"delay_ms":3000,"enabled":true}'
    '')
    (script "gremlin-off" ''
      curl -sf -X DELETE http://localhost:5002/gremlin
    '')
    (script "alert-firing" ''
      curl -sf http://localhost:9090/api/v1/alerts \
        | jq -e '[.data.alerts[] | select(.labels.alertname == "OrderServiceSLABreach" and .state == "firing")] | length > 0'
    '')
    (script "grafana-get" ''
      curl -sf -u "admin:$(cat /var/lib/valerix-grafana/admin-password)" "http://127.0.0.1:3030$1"
    '')
    # The dashboard itself (type dash-db, its uid), not merely something named
    # Valerix: the alert provisioning creates a "Valerix" folder (dash-folder) too.
    (script "grafana-dashboard-provisioned" ''
      grafana-get "/api/search?type=dash-db&query=Valerix" \
        | jq -e --arg uid "$1" 'any(.[]; .uid == $uid and .type == "dash-db")'
    '')
    (script "grafana-alert-rule-provisioned" ''
      grafana-get /api/v1/provisioning/alert-rules \
        | jq -e --arg uid "$1" 'any(.[]; .uid == $uid and .title == "OrderServiceSLABreach")'
    '')
    (script "jaeger-has-service" ''
      curl -sf http://localhost:16686/api/services | jq -e --arg s "$1" '.data | index($s) != null'
    '')
    (script "seed-products" ''
      runuser -u postgres -- psql -v ON_ERROR_STOP=1 -d valerix -c \
        "INSERT INTO inventory (product_id, name, price_cents, stock)
         VALUES ('PROD-1', 'Valerix widget', 1999, 100000)
         ON CONFLICT (product_id) DO NOTHING"
    '')
    (script "pending-orders" ''
      runuser -u postgres -- psql -tA -d valerix -c \
        "SELECT count(*) FROM orders WHERE status LIKE 'PENDING%'"
    '')
  ];
in
pkgs.testers.runNixOSTest {
  name = "valerix-stack";

  nodes.machine = {
    imports = [ ../module.nix ];

    virtualisation.memorySize = 3072;
    virtualisation.cores = 2;

    services.valerix = {
      enable = true;
      package = valerix;
      gremlins.enable = true;
      otlpEndpoint = "http://127.0.0.1:4318";
      prometheus.enable = true;
      grafana.enable = true;
      jaeger = {
        enable = true;
        package = jaeger;
      };
    };

    environment.systemPackages = helpers;
  };

  testScript = ''
    import json
    import re

    units = [
        "valerix-inventory",
        "valerix-payment",
        "valerix-order",
        "valerix-gateway",
        "valerix-jaeger",
    ]


    def post_order():
        body, code = machine.succeed("post-order").rsplit("\n", 1)
        return int(code), json.loads(body)


    start_all()

    with subtest("every unit reaches active"):
        machine.wait_for_unit("postgresql.target")
        for unit in units:
            machine.wait_for_unit(f"{unit}.service")
        machine.wait_for_unit("prometheus.service")
        machine.wait_for_unit("grafana.service")
        for port in [5000, 5001, 5002, 5003, 9090, 3030, 16686, 4318]:
            machine.wait_for_open_port(port)
        machine.succeed("seed-products")

    with subtest("an order goes CONFIRMED through the gateway"):
        code, order = post_order()
        assert code == 201 and order["status"] == "CONFIRMED", (code, order)

    with subtest("who may call what: the saga's steps are not routed, the operator's need the token"):
        token_file = "/var/lib/valerix/operator-token"
        bearer = f"-H \"Authorization: Bearer $(cat {token_file})\""
        refund = (
            "http-status -X POST http://127.0.0.1:5000/api/payments/refund"
            + " -H 'content-type: application/json'"
            + f" -d '{{\"order_id\":\"{order['id']}\"}}'"
        )
        code = machine.succeed(refund).strip()
        assert code == "404", f"anonymous refund through the gateway: {code}"
        code = machine.succeed(f"{refund} {bearer}").strip()
        assert code == "404", f"refund through the gateway with the operator token: {code}"
        code = machine.succeed("http-status http://127.0.0.1:5000/api/orders").strip()
        assert code == "401", f"order list without the operator token: {code}"
        code = machine.succeed(f"http-status {bearer} http://127.0.0.1:5000/api/orders").strip()
        assert code == "200", f"order list with the operator token: {code}"
        # Generated by valerix-tokens.service: 64 hex digits, root's alone, and
        # nowhere in the gateway unit's properties (its environment included).
        mode = machine.succeed(f"stat -c '%a %U' {token_file}").strip()
        assert mode == "600 root", (token_file, mode)
        machine.succeed(f"grep -qxE '[0-9a-f]{{64}}' {token_file}")
        machine.fail(f"systemctl show valerix-gateway.service | grep -F \"$(cat {token_file})\"")
        # One host, every service on loopback: no service token, so the
        # services' own ports answer the operator's operations to local callers.
        code = machine.succeed("http-status http://127.0.0.1:5001/orders").strip()
        assert code == "200", f"order list on the order service's own port: {code}"

    with subtest("the services call each other over their Unix sockets, the valerix user's only"):
        for name in ["order", "inventory", "payment", "gateway"]:
            path = f"/run/valerix/{name}/http.sock"
            mode = machine.succeed(f"stat -c '%F %a %U' {path}").strip()
            assert mode == "socket 700 valerix", (path, mode)
        machine.succeed(
            "systemctl show --property=Environment valerix-order.service"
            + " | grep -F 'INVENTORY_URL=unix:/run/valerix/inventory/http.sock'"
        )
        sock = "--unix-socket /run/valerix/inventory/http.sock http://localhost/health"
        machine.succeed(f"runuser -u valerix -- curl -sf {sock}")
        # Refused by the socket's mode, nothing else: curl's exit status 7 is
        # "could not connect" (here EACCES), unlike 127 (no curl), 1 (runuser)
        # or 22 (an HTTP error status).
        status, out = machine.execute(f"runuser -u nobody -- curl -sS {sock} 2>&1")
        assert status == 7, (status, out)

    with subtest("the 3 s inventory gremlin: orders PENDING_INVENTORY, SLA alert firing"):
        machine.succeed("gremlin-on")
        pending = []
        for _ in range(3):
            code, order = post_order()
            assert code == 202 and order["status"] == "PENDING_INVENTORY", (code, order)
            pending.append(order["id"])
        # Slow orders keep coming, one per attempt, until the alert is seen.
        machine.wait_until_succeeds("slow-order-then-alert-firing", timeout=240)

    with subtest("lifting the gremlin lets the reconciler confirm the pending orders"):
        machine.succeed("gremlin-off")
        for oid in pending:
            machine.wait_until_succeeds(
                f"test \"$(order-status {oid})\" = CONFIRMED", timeout=300
            )

    with subtest("Grafana lists the provisioned dashboard and alert rule"):
        machine.wait_until_succeeds(
            "grafana-dashboard-provisioned ${dashboardUid}", timeout=120
        )
        machine.wait_until_succeeds(
            "grafana-alert-rule-provisioned ${alertRuleUid}", timeout=120
        )

    with subtest("Jaeger has traces of the four services"):
        for service in ["api-gateway", "order-service", "inventory-service", "payment-service"]:
            machine.wait_until_succeeds(f"jaeger-has-service {service}", timeout=120)

    with subtest("a service stopped with SIGSTOP is restarted by its watchdog"):
        # systemd logs "Failed with result 'watchdog'" when WatchdogSec= ran out
        # (a crash or a kill would say 'signal' or 'exit-code'); the unit's own
        # Result= is reset by the restart, so the journal is where it shows.
        watchdog = (
            "journalctl -o cat -u valerix-inventory.service"
            + " | grep -cF \"Failed with result 'watchdog'\" || true"
        )
        before = int(machine.succeed(watchdog))
        restarts = int(machine.get_unit_property("valerix-inventory.service", "NRestarts"))
        machine.succeed("systemctl kill --signal=SIGSTOP valerix-inventory.service")
        machine.wait_until_succeeds(f"test $({watchdog}) -gt {before}", timeout=240)
        machine.wait_until_succeeds(
            "test $(systemctl show --property=NRestarts --value valerix-inventory.service)"
            + f" -gt {restarts}",
            timeout=240,
        )
        machine.wait_for_unit("valerix-inventory.service")

    with subtest("systemd-analyze security: exposure 2.0 or less for every unit"):
        for unit in units:
            out = machine.succeed(f"systemd-analyze security --no-pager {unit}.service")
            match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
            assert match is not None, out
            assert float(match.group(1)) <= 2.0, f"{unit}: {match.group(0)}"

    with subtest("every order settles and valerix audit is clean"):
        machine.wait_until_succeeds("test $(pending-orders) -eq 0", timeout=600)
        machine.succeed(
            "runuser -u valerix -- valerix audit"
            + " --database-url 'postgres:///valerix?host=/run/postgresql&user=valerix'"
        )
  '';
}
