//! docs/CONTRACT.md's configuration tables are the binaries' own: every flag,
//! environment variable and default a table names is what clap parses, and
//! every flag a service takes is in a table. A default changed in code and
//! not in the docs (or the other way round) fails here.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use clap::CommandFactory;

/// One documented or parsed setting: flag -> (environment variable, default).
type Settings = BTreeMap<String, (String, String)>;

fn binaries() -> Vec<(&'static str, clap::Command)> {
    use clap::Args;
    use valerix::backup::{BackupArgs, RestoreArgs, dev::UpBackupArgs, offsite::UploadArgs};
    let verb = |name: &'static str| clap::Command::new(name);
    vec![
        ("order-service", order_service::Config::command()),
        ("inventory-service", inventory_service::Config::command()),
        ("payment-service", payment_service::Config::command()),
        ("api-gateway", api_gateway::Config::command()),
        // The backup verbs of the CLI; of `valerix up`, its backup flags.
        ("valerix up", UpBackupArgs::augment_args(verb("up"))),
        ("valerix backup", BackupArgs::augment_args(verb("backup"))),
        (
            "valerix restore",
            RestoreArgs::augment_args(verb("restore")),
        ),
        (
            "valerix upload-offsite",
            UploadArgs::augment_args(verb("upload-offsite")),
        ),
    ]
}

fn parsed(command: &clap::Command) -> Settings {
    command
        .get_arguments()
        .filter_map(|arg| {
            let flag = format!("--{}", arg.get_long()?);
            let env = arg
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            let default = if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                "off".to_owned()
            } else {
                arg.get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            Some((flag, (env, default)))
        })
        .collect()
}

/// `| `--flag` | `ENV` | `default` | meaning |` rows under each `### `
/// heading, keyed by the binaries the heading names in backticks.
fn documented(contract: &str) -> BTreeMap<String, Settings> {
    let mut docs: BTreeMap<String, Settings> = BTreeMap::new();
    let mut applies: Vec<String> = Vec::new();
    let cell = |c: &str| c.trim().trim_matches('`').to_owned();
    for line in contract.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            applies = heading
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            continue;
        }
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 5 || !cells[1].trim().starts_with("`--") {
            continue;
        }
        let default = cell(cells[3]);
        let default = if default == "none" {
            String::new()
        } else {
            default
        };
        for binary in &applies {
            docs.entry(binary.clone()).or_default().insert(
                cell(cells[1]),
                (cell(cells[2]).replace("none", ""), default.clone()),
            );
        }
    }
    docs
}

fn row(flag: &str, (env, default): &(String, String)) -> String {
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            format!("`{s}`")
        }
    };
    format!(
        "| `{flag}` | {} | {} | ... |",
        or_none(env),
        or_none(default)
    )
}

#[test]
fn every_flag_env_and_default_in_the_contract_is_the_binaries_own() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONTRACT.md");
    let contract = std::fs::read_to_string(&path).expect("docs/CONTRACT.md");
    let docs = documented(&contract);
    let mut problems = Vec::new();
    for (binary, command) in binaries() {
        let code = parsed(&command);
        let doc = docs.get(binary).cloned().unwrap_or_default();
        for (flag, setting) in &code {
            match doc.get(flag) {
                None => problems.push(format!("{binary}: undocumented {}", row(flag, setting))),
                Some(d) if d != setting => problems.push(format!(
                    "{binary}: documented {}, but the binary has {}",
                    row(flag, d),
                    row(flag, setting)
                )),
                Some(_) => {}
            }
        }
        let extra: BTreeSet<_> = doc.keys().filter(|f| !code.contains_key(*f)).collect();
        for flag in extra {
            problems.push(format!(
                "{binary}: documents {flag}, which it does not take"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/CONTRACT.md and the binaries disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_contract_check_catches_a_changed_default() {
    let contract = "### `order-service`\n| flag | environment | default | meaning |\n|---|---|---|---|\n\
                    | `--order-deadline-secs` | `VALERIX_ORDER_DEADLINE_SECS` | `120` | x |\n";
    let doc = &documented(contract)["order-service"];
    let code = parsed(&order_service::Config::command());
    assert_ne!(
        doc.get("--order-deadline-secs"),
        code.get("--order-deadline-secs"),
        "a 120 s deadline in the docs against the code's default is a mismatch"
    );
}
