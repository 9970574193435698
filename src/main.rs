//! The real (non-simulated) standby binary.

use clap::{Parser, Subcommand};

/// standby: a fenced disaster-recovery controller for a primary/backup pair of storage
/// clusters.
#[derive(Parser, Debug)]
#[command(name = "standby", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the default controller parameters as TOML (the `[controller]` table of a scenario).
    Params,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Params => {
            let params = standby::params::Params::default();
            print!(
                "{}",
                toml::to_string(&params).expect("parameters serialise")
            );
        }
    }
}
