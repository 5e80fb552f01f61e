fn main() -> std::process::ExitCode {
    valerix::cli::main()
}
