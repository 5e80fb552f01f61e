//! The `valerix` CLI, built again as a target of the integration tests'
//! package: the same code as the `valerix` binary ([`valerix::cli::main`]),
//! so every test that starts `valerix up`, `valerix service ...` or
//! `valerix audit` runs what this tree builds, never an older binary left in
//! `target/`.

fn main() -> std::process::ExitCode {
    valerix::cli::main()
}
