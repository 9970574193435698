//! The standby binary: `standby params`, and in a non-simulated build the real controller
//! (`standby controller`) and its status query (`standby status`).

use clap::{Parser, Subcommand};

/// standby: a fenced disaster-recovery controller for a primary/backup pair of storage
/// clusters.
#[derive(Parser, Debug)]
#[command(name = "standby", version, about)]
#[cfg_attr(
    madsim,
    command(
        after_help = "This is a simulation build (--cfg madsim): `controller` and `status` need a \
                      real one: RUSTFLAGS=\"\" cargo build --release -p standby --target-dir target/real"
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the default controller parameters as TOML (the `[params]` table of a controller
    /// config, the `[controller]` table of a scenario).
    Params,
    /// Run the controller and its config center until Ctrl-C or SIGTERM.
    #[cfg(not(madsim))]
    Controller {
        /// The config file (see examples/controller.toml).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Prepare the Redis servers of a controller config: write their ACL file (mode 0600) and
    /// print the redis.conf lines that load it. Apply them to every server, then restart it.
    #[cfg(not(madsim))]
    RedisSetup {
        /// The controller's config file (its `[redis]` table).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Where to write the ACL file (a path each redis-server can read).
        #[arg(long)]
        acl_file: std::path::PathBuf,
    },
    /// Ask a running controller for its state.
    #[cfg(not(madsim))]
    Status {
        /// The controller's `status_listen` address.
        #[arg(long, default_value = "127.0.0.1:7300")]
        controller: String,
        /// Print the raw JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
        #[cfg(not(madsim))]
        Command::Controller { config } => real::controller(&config),
        #[cfg(not(madsim))]
        Command::Status { controller, json } => real::status(&controller, json),
        #[cfg(not(madsim))]
        Command::RedisSetup { config, acl_file } => real::redis_setup(&config, &acl_file),
    }
}

#[cfg(not(madsim))]
mod real {
    use standby::real::config::Config;
    use standby::real::run::{shutdown_signal, Bound};
    use standby::real::status::query;
    use std::path::Path;
    use std::process::exit;
    use std::time::Duration;

    /// Exit status for a config, flag or state file that cannot be used (as clap's for a bad
    /// flag): nothing was started.
    const EXIT_USAGE: i32 = 2;
    /// Exit status for a failure while running, or a controller that cannot be reached.
    const EXIT_FAILURE: i32 = 1;

    /// `standby controller --config FILE`.
    pub fn controller(file: &Path) {
        init_logs();
        let config = Config::load(file).unwrap_or_else(|e| fail(EXIT_USAGE, &e));
        let result = runtime().block_on(async move {
            let bound = Bound::bind(config).await?;
            bound.run(shutdown_signal()).await
        });
        if let Err(e) = result {
            let code = match e {
                standby::real::run::RunError::Store(_)
                | standby::real::run::RunError::Node { .. }
                | standby::real::run::RunError::Secret(_) => EXIT_USAGE,
                _ => EXIT_FAILURE,
            };
            fail(code, &e);
        }
    }

    /// `standby redis-setup --config FILE --acl-file PATH`.
    pub fn redis_setup(file: &Path, acl_file: &Path) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let config = Config::load(file).unwrap_or_else(|e| fail(EXIT_USAGE, &e));
        let redis = &config.redis;
        let acl =
            standby::real::redis_setup::acl_file(redis).unwrap_or_else(|e| fail(EXIT_USAGE, &e));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(acl_file)
            .and_then(|mut f| f.write_all(acl.as_bytes()));
        if let Err(e) = written {
            fail(EXIT_FAILURE, &format!("{}: {e}", acl_file.display()));
        }
        let path = acl_file.display().to_string();
        let settings = standby::real::redis_setup::server_settings(redis, &path)
            .unwrap_or_else(|e| fail(EXIT_USAGE, &e));
        println!(
            "# Add to the redis.conf of every server in {}:",
            file.display()
        );
        for (key, value) in settings {
            println!("{key} {value}");
        }
    }

    /// `standby status [--controller ADDR] [--json]`.
    pub fn status(address: &str, json: bool) {
        let answer = runtime().block_on(query(address, Duration::from_secs(5)));
        match answer {
            Ok((line, _)) if json => println!("{line}"),
            Ok((_, status)) => print!("{status}"),
            Err(e) => fail(EXIT_FAILURE, &e),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(EXIT_FAILURE, &e))
    }

    /// Logs on stderr; RUST_LOG picks the level (default info).
    fn init_logs() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal, never into a log file or journal.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }

    fn fail(code: i32, error: &dyn std::fmt::Display) -> ! {
        eprintln!("standby: {error}");
        exit(code)
    }
}
