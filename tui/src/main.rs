//! The `skiff` binary: see the `skiff_tui` library.

fn main() -> std::process::ExitCode {
    skiff_tui::main()
}
