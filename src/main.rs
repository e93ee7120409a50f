//! `epiflow`: sets the allocator's thresholds, parses the command line, sets
//! up logging and runs the command.

use clap::Parser;
use epiflow::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    epiflow::allocator::keep_freed_memory();
    let cli = Cli::parse();
    epiflow::cli::init_logging(&cli.global);
    match epiflow::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
