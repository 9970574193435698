//! The standby binary: `standby params`, and in a non-simulated build the real controller
//! (`standby controller`), its status query (`standby status`) and a user's client
//! (`standby client`).

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
    /// Ask a running controller (or any controller replica) for its state.
    #[cfg(not(madsim))]
    Status {
        /// The controller's `status_listen` address. Repeat it once per replica: the first
        /// that answers is asked.
        #[arg(long, default_value = "127.0.0.1:7300")]
        controller: Vec<String>,
        /// Print the raw JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print only the leading replica's name (exit status 1 when none leads).
        #[arg(long, conflicts_with = "json")]
        leader: bool,
    },
    /// Approve the promotion the controller holds back because the backup lags beyond
    /// `promotion_lag_entries` (an open `promotion held` alarm): the backup is promoted, and
    /// the writes it lacks are lost unless the old primary returns. Written where the
    /// controller keeps its state (etcd, under this config's login, or beside the state file).
    #[cfg(not(madsim))]
    Promote {
        /// The controller's config file (its `[etcd]` table or `state_file`).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Approve only this alarm (its id, as `standby status` shows it); default: every
        /// open promotion-held alarm.
        #[arg(long)]
        alarm: Option<u64>,
    },
    /// Act as one user: follow its route from the config center and write or read through
    /// the route's Redis server (fenced by epoch and lease).
    #[cfg(not(madsim))]
    Client {
        /// The config center's address (the controller's `config_center.listen`); repeat it
        /// once per controller replica: the client follows them all.
        #[arg(long, required = true)]
        config_center: Vec<String>,
        /// The user id.
        #[arg(long)]
        user: u32,
        /// The ACL user that may call the library's writes.
        #[arg(long, default_value = "writer")]
        writer_user: String,
        /// A file holding its password (one trailing newline is dropped).
        #[arg(long)]
        writer_password_file: std::path::PathBuf,
        #[command(subcommand)]
        action: ClientAction,
    },
}

/// What `standby client` does.
#[cfg(not(madsim))]
#[derive(Subcommand, Debug)]
enum ClientAction {
    /// Write VALUE under KEY; prints the LSN and epoch only when acknowledged.
    Write {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read KEY from the route's node; prints its value, or `(nil)`.
    Read {
        /// The key.
        key: String,
    },
    /// Print the route the config center pushes for the user.
    Route,
    /// Write continuously; print one line per change of outcome or route, then a summary.
    Bench {
        /// Start a write this often.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        every_ms: u64,
        /// Run this long.
        #[arg(long, default_value_t = 10)]
        for_s: u64,
        /// Keys are PREFIX<n>, values <n>.
        #[arg(long, default_value = "bench:")]
        key_prefix: String,
        /// Write only this many keys, over and over (PREFIX<n mod KEYS>): the data stays
        /// the same size, so memory growth is the write log's or a leak's.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keys: Option<u64>,
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
        Command::Status {
            controller,
            json,
            leader,
        } => real::status(&controller, json, leader),
        #[cfg(not(madsim))]
        Command::RedisSetup { config, acl_file } => real::redis_setup(&config, &acl_file),
        #[cfg(not(madsim))]
        Command::Promote { config, alarm } => real::promote(&config, alarm),
        #[cfg(not(madsim))]
        Command::Client {
            config_center,
            user,
            writer_user,
            writer_password_file,
            action,
        } => client::run(
            config_center,
            user,
            writer_user,
            &writer_password_file,
            action,
        ),
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
    pub(crate) const EXIT_USAGE: i32 = 2;
    /// Exit status for a failure while running, or a controller that cannot be reached.
    pub(crate) const EXIT_FAILURE: i32 = 1;

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
                | standby::real::run::RunError::Secret(_)
                | standby::real::run::RunError::Login(_) => EXIT_USAGE,
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

    /// `standby status [--controller ADDR]... [--json | --leader]`: asks each address in
    /// turn until one answers.
    pub fn status(addresses: &[String], json: bool, leader: bool) {
        let answer = runtime().block_on(async {
            let mut last = None;
            for address in addresses {
                match query(address, Duration::from_secs(5)).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("clap gives at least one address"))
        });
        match answer {
            Ok((_, status)) if leader => {
                let plane = status.control_plane.as_ref();
                match plane.and_then(|p| p.leader.as_deref()) {
                    Some(name) => println!("{name}"),
                    None => fail(
                        EXIT_FAILURE,
                        &"no replica leads (or this is a single controller)",
                    ),
                }
            }
            Ok((line, _)) if json => println!("{line}"),
            Ok((_, status)) => print!("{status}"),
            Err(e) => fail(EXIT_FAILURE, &e),
        }
    }

    /// `standby promote --config FILE [--alarm ID]`.
    pub fn promote(file: &Path, only: Option<u64>) {
        let config = Config::load(file).unwrap_or_else(|e| fail(EXIT_USAGE, &e));
        let approved = match (&config.etcd, &config.state_file) {
            (Some(etcd), _) => {
                let options = etcd
                    .options(&config.params)
                    .unwrap_or_else(|e| fail(EXIT_USAGE, &e));
                runtime()
                    .block_on(async {
                        let client = standby::control_plane::connect(&options).await?;
                        standby::control_plane::orders::approve(&client, &options, only).await
                    })
                    .unwrap_or_else(|e| fail(EXIT_FAILURE, &e))
            }
            (None, Some(state)) => standby::real::store::approve(state, only)
                .unwrap_or_else(|e| fail(EXIT_FAILURE, &e)),
            (None, None) => fail(
                EXIT_USAGE,
                &"the config names neither [etcd] nor state_file",
            ),
        };
        match approved {
            Ok(ids) => println!("approved promotion-held alarm(s) {ids:?}: the controller promotes at its next round"),
            Err(why) => fail(EXIT_FAILURE, &why),
        }
    }

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(EXIT_FAILURE, &e))
    }

    /// Logs on stderr; RUST_LOG picks the level (default info).
    pub(crate) fn init_logs() {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal, never into a log file or journal.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }

    pub(crate) fn fail(code: i32, error: &dyn std::fmt::Display) -> ! {
        eprintln!("standby: {error}");
        exit(code)
    }
}

/// `standby client ...`.
#[cfg(not(madsim))]
mod client {
    use super::real::{fail, runtime, EXIT_FAILURE, EXIT_USAGE};
    use super::ClientAction;
    use standby::client::{Client, ClientOptions, WriteError};
    use standby::protocol::Route;
    use standby::real::config::Secret;
    use standby::types::UserId;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// How long a one-shot command waits for the config center's first push.
    const FIRST_ROUTE: Duration = Duration::from_secs(5);

    pub fn run(
        centers: Vec<String>,
        user: u32,
        writer_user: String,
        password_file: &Path,
        action: ClientAction,
    ) {
        if std::env::var_os("RUST_LOG").is_some() {
            super::real::init_logs();
        }
        let password = Secret::File(password_file.to_path_buf())
            .read()
            .unwrap_or_else(|e| fail(EXIT_USAGE, &format!("--writer-password-file: {e}")));
        let center = centers.join(", ");
        let options = ClientOptions::new(String::new(), UserId(user), writer_user, password)
            .with_config_centers(centers);
        runtime().block_on(async move {
            let client = Client::start(options);
            let Some(route) = client.wait_for_route(FIRST_ROUTE).await else {
                let why = format!("no route for user {user} from the config center at {center} within {FIRST_ROUTE:?}");
                fail(EXIT_FAILURE, &why)
            };
            match action {
                ClientAction::Route => println!("{}", show(&route)),
                ClientAction::Write { key, value } => match client.write(&key, &value).await {
                    Ok(ack) => println!("acked lsn={} epoch={} node={}", ack.lsn.0, ack.epoch.0, ack.node),
                    Err(e) => fail(EXIT_FAILURE, &format!("write {key}: {e}")),
                },
                ClientAction::Read { key } => match client.read(&key).await {
                    Ok(Some(value)) => println!("{value}"),
                    Ok(None) => println!("(nil)"),
                    Err(e) => fail(EXIT_FAILURE, &format!("read {key}: {e}")),
                },
                ClientAction::Bench {
                    every_ms,
                    for_s,
                    key_prefix,
                    keys,
                } => {
                    let every = Duration::from_millis(every_ms);
                    let length = Duration::from_secs(for_s);
                    bench(&client, every, length, &key_prefix, keys).await
                }
            }
        });
    }

    fn show(route: &Route) -> String {
        format!(
            "epoch={} node={} address={}",
            route.epoch.0, route.node, route.address
        )
    }

    fn unix_ms() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    }

    /// Writes `PREFIX<n>` (or `PREFIX<n mod keys>`) = `<n>` every `every` for `length`, one
    /// at a time. Prints a line
    /// (`t=+MS unix_ms=MS ...`) when the outcome's kind or the route changes, then a summary
    /// line of `key=value` fields for scripts.
    async fn bench(
        client: &Client,
        every: Duration,
        length: Duration,
        prefix: &str,
        keys: Option<u64>,
    ) {
        let start = Instant::now();
        let stamp = || format!("t=+{}ms unix_ms={}", start.elapsed().as_millis(), unix_ms());
        let mut routes = client.watch_route();
        let mut route_changes = Vec::new();
        let mut last_route = routes.borrow_and_update().clone();
        if let Some(route) = &last_route {
            println!("{} route {}", stamp(), show(route));
        }
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut writes, mut acked, mut unknown) = (0u64, 0u64, 0u64);
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        let mut last_kind = String::new();
        let mut last_ack = start;
        let mut longest_gap = Duration::ZERO;
        while start.elapsed() < length {
            ticks.tick().await;
            writes += 1;
            let key = format!("{prefix}{}", keys.map_or(writes, |k| writes % k));
            let outcome = client.write(&key, &writes.to_string()).await;
            if routes.has_changed().unwrap_or(false) {
                let route = routes.borrow_and_update().clone();
                if route != last_route {
                    if let Some(route) = &route {
                        println!("{} route {}", stamp(), show(route));
                        route_changes.push(format!(
                            "+{}ms:epoch{}:{}",
                            start.elapsed().as_millis(),
                            route.epoch.0,
                            route.node
                        ));
                    }
                    last_route = route;
                }
            }
            let kind = match &outcome {
                Ok(ack) => {
                    acked += 1;
                    longest_gap = longest_gap.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    format!("acked epoch={} node={}", ack.epoch.0, ack.node)
                }
                Err(WriteError::Unknown(why)) => {
                    unknown += 1;
                    format!("unknown ({why})")
                }
                Err(e) => {
                    *rejected.entry(e.reason().to_string()).or_default() += 1;
                    format!("{e}")
                }
            };
            // One line per change of kind: the detail of repeated errors is noise.
            let short = kind.split(" (").next().unwrap_or(&kind).to_string();
            if short != last_kind {
                println!("{} {key} {kind}", stamp());
                last_kind = short;
            }
        }
        longest_gap = longest_gap.max(last_ack.elapsed());
        let rejected_text: Vec<String> = rejected.iter().map(|(r, n)| format!("{r}:{n}")).collect();
        let failed: u64 = rejected.values().sum();
        println!(
            "summary writes={writes} acked={acked} unknown={unknown} failed={failed} by_reason={} route_changes={} longest_no_ack_ms={} seconds={:.1}",
            list(&rejected_text),
            list(&route_changes),
            longest_gap.as_millis(),
            start.elapsed().as_secs_f64()
        );
    }

    fn list(items: &[String]) -> String {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    }
}
