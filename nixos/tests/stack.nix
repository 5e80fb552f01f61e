# The whole stack on one VM, faults included: every unit active through its own
# READY=1, an order CONFIRMED through the gateway, the tokens through
# LoadCredential=, the 3 s inventory gremlin -> orders PENDING_INVENTORY and the
# SLA alert firing in Prometheus, the reconciler confirming them once the gremlin
# is lifted, Grafana's provisioned dashboard and alert, traces of the four
# services in Jaeger, a watchdog restart after SIGSTOP (and none while PostgreSQL
# is away for 60 s), a load with no sandbox denial, `systemd-analyze security`
# <= 2.0 for every unit, WAL archiving, a backup and a restore that brings back
# every acknowledged order, and a clean `valerix audit`.
#
# The same testScript runs against a real systemd without Nix: the systemd twin
# (nixos/twin/twin.py) boots this node's units in systemd-nspawn; what it lacks
# (Grafana, Jaeger) it reports as skipped, by subtest.
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
    (script "sql" ''
      runuser -u postgres -- psql -v ON_ERROR_STOP=1 -tA -d valerix -c "$1"
    '')
    # A unit's log records of this boot: at least one carries a TRACE_ID field
    # (32 hex digits), as tracing-journald writes a request's trace id.
    (script "journal-has-trace-ids" ''
      journalctl -b -u "$1" -o json --no-pager \
        | jq -e -s 'any(.[]; (.TRACE_ID // "") | test("^[0-9a-f]{32}$"))'
    '')
    (script "health-status" ''
      curl -s -m 10 "http://localhost:$1/health" | jq -r .status
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
      backup.enable = true;
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
    ]


    unit_list = "valerix-inventory.service valerix-payment.service valerix-order.service valerix-gateway.service"
    socket_list = "valerix-inventory.socket valerix-payment.socket valerix-order.socket valerix-gateway.socket"


    def post_order():
        body, code = machine.succeed("post-order").rsplit("\n", 1)
        return int(code), json.loads(body)


    def restarts():
        return {u: int(machine.get_unit_property(f"{u}.service", "NRestarts")) for u in units}


    start_all()

    with subtest("every valerix unit, PostgreSQL and Prometheus reach active"):
        machine.wait_for_unit("postgresql.target")
        for unit in units:
            machine.wait_for_unit(f"{unit}.service")
        machine.wait_for_unit("prometheus.service")
        for port in [5000, 5001, 5002, 5003, 9090]:
            machine.wait_for_open_port(port)
        machine.succeed("seed-products")

    with subtest("each valerix unit became active through its own READY=1"):
        for unit in units:
            info = machine.get_unit_info(f"{unit}.service")
            assert info["Type"] == "notify" and info["NotifyAccess"] == "main", (unit, info["Type"])
            assert (info["ActiveState"], info["SubState"]) == ("active", "running"), unit
            # The STATUS= the process sent with READY=1, once its socket was
            # bound and the database migrated.
            assert info["StatusText"].startswith("serving on "), (unit, info["StatusText"])
            assert info["WatchdogUSec"] == "10s", (unit, info["WatchdogUSec"])

    with subtest("Grafana and Jaeger reach active"):
        machine.wait_for_unit("grafana.service")
        machine.wait_for_unit("valerix-jaeger.service")
        for port in [3030, 16686, 4318]:
            machine.wait_for_open_port(port)

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

    with subtest("the operator token reaches the gateway through LoadCredential=, and no one else"):
        cred = "/run/credentials/valerix-gateway.service/operator-token"
        gateway = machine.succeed("systemctl show --property=MainPID --value valerix-gateway.service").strip()
        order_pid = machine.succeed("systemctl show --property=MainPID --value valerix-order.service").strip()
        # The gateway's own view of its credentials directory holds the token.
        machine.succeed(f"nsenter -t {gateway} -m -- cat {cred} | cmp - {token_file}")
        machine.succeed(
            "systemctl show --property=Environment valerix-gateway.service"
            + f" | grep -F 'VALERIX_OPERATOR_TOKEN_FILE={cred}'"
        )
        # Another user cannot read it, and another valerix unit (the same
        # user) does not even see it.
        machine.fail(f"runuser -u nobody -- cat {cred}")
        machine.fail(f"nsenter -t {order_pid} -m -S 0 -G 0 -- cat {cred}")

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

    with subtest("a service stopped with SIGSTOP is restarted by its watchdog; orders placed meanwhile settle"):
        # systemd logs "Failed with result 'watchdog'" when WatchdogSec= ran out
        # (a crash or a kill would say 'signal' or 'exit-code'); the unit's own
        # Result= is reset by the restart, so the journal is where it shows.
        watchdog = (
            "journalctl -o cat -u valerix-inventory.service"
            + " | grep -cF \"Failed with result 'watchdog'\" || true"
        )
        before = int(machine.succeed(watchdog))
        before_restarts = restarts()
        machine.succeed("systemctl kill --signal=SIGSTOP valerix-inventory.service")
        placed = []
        for _ in range(2):
            code, order = post_order()
            assert code in (201, 202), (code, order)
            placed.append(order["id"])
        machine.wait_until_succeeds(f"test $({watchdog}) -gt {before}", timeout=240)
        machine.wait_until_succeeds(
            "test $(systemctl show --property=NRestarts --value valerix-inventory.service)"
            + f" -gt {before_restarts['valerix-inventory']}",
            timeout=240,
        )
        machine.wait_for_unit("valerix-inventory.service")
        for oid in placed:
            machine.wait_until_succeeds(f"test \"$(order-status {oid})\" = CONFIRMED", timeout=300)
        after = restarts()
        for unit in units:
            if unit != "valerix-inventory":
                assert after[unit] == before_restarts[unit], (unit, before_restarts, after)

    with subtest("PostgreSQL away for 60 s under load: no unit restarted, health unhealthy, every order settles"):
        before_restarts = restarts()
        machine.succeed(
            "systemd-run --unit=valerix-load-outage --property=Type=exec"
            + " valerix load --gateway --rate 20 --duration 75s --hot PROD-1"
            + " --settle-within 120s --report-dir /tmp/load-outage --progress lines"
        )
        # The load is placing orders before the database goes.
        confirmed = int(machine.succeed("sql \"SELECT count(*) FROM orders WHERE status = 'CONFIRMED'\""))
        machine.wait_until_succeeds(
            f"test $(sql \"SELECT count(*) FROM orders WHERE status = 'CONFIRMED'\") -gt {confirmed + 20}",
            timeout=60,
        )
        machine.succeed("systemctl stop postgresql.service")
        for port in [5001, 5002, 5003]:
            machine.wait_until_succeeds(f"test \"$(health-status {port})\" = unhealthy", timeout=30)
        machine.wait_until_succeeds(
            "systemctl show --property=StatusText --value valerix-order.service | grep -q '^unhealthy'",
            timeout=30,
        )
        # The fault lasts 60 s: six watchdog periods of 10 s.
        machine.sleep(60)
        for unit in units:
            machine.require_unit_state(f"{unit}.service", "active")
        assert restarts() == before_restarts, (before_restarts, restarts())
        machine.succeed("systemctl start postgresql.target")
        for port in [5001, 5002, 5003]:
            machine.wait_until_succeeds(f"test \"$(health-status {port})\" = healthy", timeout=60)
        machine.wait_until_fails("systemctl is-active --quiet valerix-load-outage.service", timeout=300)
        machine.wait_until_succeeds("test $(pending-orders) -eq 0", timeout=300)
        assert restarts() == before_restarts, (before_restarts, restarts())

    with subtest("a 30 s load: no seccomp kill, no sandbox denial, trace ids in the journal"):
        cursor = machine.succeed("journalctl -n 0 --show-cursor -o cat | sed -n 's/^-- cursor: //p'").strip()
        machine.succeed(
            "valerix load --gateway --rate 100 --duration 30s --hot PROD-1"
            + " --report-dir /tmp/load --progress lines"
        )
        journal = machine.succeed(
            f"journalctl --after-cursor='{cursor}' --no-pager -o cat"
            + " -u valerix-order.service -u valerix-inventory.service"
            + " -u valerix-payment.service -u valerix-gateway.service -u postgresql.service"
        )
        for denial in ["SIGSYS", "status=31/SYS", "Operation not permitted", "Permission denied", "EACCES", "EPERM"]:
            assert denial not in journal, f"{denial} in the journal:\n{journal[-3000:]}"
        # A healthy request logs nothing at the info level; the gremlin and the
        # outage above made the order service log inside requests.
        machine.succeed("journal-has-trace-ids valerix-order.service")

    with subtest("systemctl restart of each service under load through the gateway: nothing refused, reset or lost"):
        before_restarts = restarts()
        # 50 orders/s: what a debug build (the one CI runs here) carries with
        # room to spare on two cores, so a 503 could only come from a restart.
        machine.succeed(
            "systemd-run --unit=valerix-load-restarts --property=Type=exec"
            + " valerix load --gateway --rate 50 --duration 30s --hot PROD-1"
            + " --report-dir /tmp/load-restarts --progress lines"
        )
        machine.wait_until_succeeds("systemctl is-active --quiet valerix-load-restarts.service", timeout=30)
        # The services behind the gateway, then the gateway itself: its
        # kept-alive connections are closed after their next answer
        # (`Connection: close`), so the load's client reconnects to the
        # socket that stayed open.
        for unit in ["valerix-inventory", "valerix-payment", "valerix-order", "valerix-gateway"]:
            pid = machine.get_unit_property(f"{unit}.service", "MainPID")
            machine.succeed(f"systemctl restart {unit}.service")
            machine.wait_for_unit(f"{unit}.service")
            assert machine.get_unit_property(f"{unit}.service", "MainPID") != pid, unit
            # The next restart a little later in the load, not on top of this one.
            machine.sleep(2)
        machine.wait_until_fails("systemctl is-active --quiet valerix-load-restarts.service", timeout=180)
        report = json.loads(machine.succeed("cat /tmp/load-restarts/*.json"))
        totals = report["totals"]
        # The sockets stayed open: every order answered 2xx, none refused,
        # reset or answered 502/503 while a process was replaced.
        assert totals["errors"] == 0 and totals["acknowledged"] == totals["sent"], (totals, report["status_codes"])
        machine.log(f"restarts under load: {totals['sent']} orders, status codes {report['status_codes']}")
        # No unit failed meanwhile: NRestarts counts systemd's own restarts
        # since a unit's last manual start (which `systemctl restart` is).
        after = restarts()
        for unit in units:
            assert after[unit] == 0, (unit, before_restarts, after)

    with subtest("systemd-analyze security: exposure 2.0 or less for every valerix unit"):
        for unit in units:
            out = machine.succeed(f"systemd-analyze security --no-pager {unit}.service")
            match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
            assert match is not None, out
            machine.log(match.group(0))
            assert float(match.group(1)) <= 2.0, f"{unit}: {match.group(0)}"

    with subtest("systemd-analyze security: exposure 2.0 or less for Jaeger's unit"):
        out = machine.succeed("systemd-analyze security --no-pager valerix-jaeger.service")
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
        assert match is not None and float(match.group(1)) <= 2.0, out

    with subtest("backups: WAL archived from the hardened postgresql.service, the timer's backup, a restore loses no acknowledged order"):
        machine.succeed("systemctl is-enabled pgbackrest-default-full.timer pgbackrest-default-diff.timer")
        # What the timer starts, started now.
        machine.succeed("systemctl start pgbackrest-default-full.service")
        machine.succeed("runuser -u postgres -- pgbackrest --stanza=default info | grep -q 'full backup'")
        acknowledged = []
        for _ in range(5):
            code, order = post_order()
            assert code == 201, (code, order)
            acknowledged.append(order["id"])
        # archive_command runs inside postgresql.service: the segment holding
        # those orders is archived, and no attempt failed.
        wal = machine.succeed("sql 'SELECT pg_walfile_name(pg_switch_wal())'").strip()
        machine.wait_until_succeeds(
            f"test \"$(sql \"SELECT last_archived_wal >= '{wal}' FROM pg_stat_archiver\")\" = t",
            timeout=120,
        )
        failed = machine.succeed("sql 'SELECT failed_count FROM pg_stat_archiver'").strip()
        assert failed == "0", f"archive_command failed {failed} times"
        # The disk is lost: restore into an empty data directory.
        # The sockets too: a connection (Prometheus' scrape) would start a service.
        machine.succeed(f"systemctl stop {socket_list} {unit_list} postgresql.service")
        datadir = machine.succeed(
            "systemctl show --property=Environment --value postgresql.service | tr ' ' '\\n' | sed -n 's/^PGDATA=//p'"
        ).strip()
        machine.succeed(f"mv {datadir} {datadir}.lost && install -d -m 0750 -o postgres -g postgres {datadir}")
        machine.succeed("runuser -u postgres -- pgbackrest --stanza=default restore")
        machine.succeed("systemctl start postgresql.target")
        machine.wait_for_unit("postgresql-setup.service")
        machine.succeed(f"systemctl start {socket_list} {unit_list}")
        for unit in units:
            machine.wait_for_unit(f"{unit}.service")
        for oid in acknowledged:
            status = machine.succeed(f"order-status {oid}").strip()
            assert status == "CONFIRMED", (oid, status)

    with subtest("every order settles and valerix audit is clean"):
        machine.wait_until_succeeds("test $(pending-orders) -eq 0", timeout=600)
        machine.succeed(
            "runuser -u valerix -- valerix audit"
            + " --database-url 'postgres:///valerix?host=/run/postgresql&user=valerix'"
        )
  '';
}
