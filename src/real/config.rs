//! The controller's TOML config file: where it keeps its state, where it listens, its
//! parameters, the two clusters' nodes (Redis servers, by address), how to log in to them,
//! and the users.
//!
//! Every error names the file, the line and the field (`controller.toml:12: clusters.b: ...`):
//! an operator fixing a config at 3 a.m. should not have to guess which of six addresses is
//! wrong. serde reports syntax and type errors with a byte span; the checks made after parsing
//! find their line through the parsed document's spans ([`Spans`]).

use crate::controller::Topology;
use crate::params::Params;
use crate::types::{Cluster, NodeId, Shard, UserId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value is missing, misplaced or wrong.
    #[error("{file}:{line}: {field}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// The 1-based line of the offending key, value or table.
        line: usize,
        /// The dotted path of the offending field (`clusters.b`, `users.assign[1].shard`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A validated controller config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: PathBuf,
    /// Where the durable state lives, for a controller running alone; `None` with `[etcd]`,
    /// where it lives in etcd.
    pub state_file: Option<PathBuf>,
    /// The control plane on etcd: this process is one controller replica of several.
    pub etcd: Option<EtcdConfig>,
    /// Where `standby status` asks.
    pub status_listen: SocketAddr,
    /// Run once per alarm event, with the event as one JSON object on stdin: the program and
    /// its arguments (no shell).
    pub alarm_command: Option<Vec<String>>,
    /// The controller's parameters, validated.
    pub params: Params,
    /// Where this process serves the config center.
    pub config_center_listen: SocketAddr,
    /// The clusters' node addresses (Redis servers) and the users' shards.
    pub topology: Topology,
    /// How the controller logs in to the Redis servers, and where quarantines go.
    pub redis: RedisConfig,
}

/// The `[etcd]` table: how this replica reaches etcd, and its name among the replicas.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// This replica's name: unique among the replicas (its value in the election).
    pub name: String,
    /// etcd's client endpoints, `host:port`.
    pub endpoints: Vec<String>,
    /// Every key of this control plane starts with it.
    pub prefix: String,
    /// The TTL of the replica's etcd lease, in seconds.
    pub lease_ttl_s: u64,
    /// The longest one etcd call may take.
    pub call_timeout: std::time::Duration,
    /// The etcd user, if etcd has authentication on.
    pub user: Option<String>,
    /// Its password: `password_file`, or the `STANDBY_ETCD_PASSWORD` environment variable.
    pub password: Option<Secret>,
    /// Where a login that etcd refuses is reported: the config file's line of `etcd.user`
    /// (or of the `[etcd]` table).
    pub login_line: usize,
}

impl EtcdConfig {
    /// The error for a login etcd refused, at `etcd.user`'s line of `file`.
    pub fn refused_login(&self, file: &Path, reason: String) -> ConfigError {
        ConfigError::Invalid {
            file: file.display().to_string(),
            line: self.login_line,
            field: "etcd.user".into(),
            reason,
        }
    }
}

/// The environment variable an etcd password may come from (never the command line).
pub const ETCD_PASSWORD_ENV: &str = "STANDBY_ETCD_PASSWORD";

impl EtcdConfig {
    /// The options the control plane runs with (reads the password).
    pub fn options(&self, params: &Params) -> std::io::Result<crate::control_plane::EtcdOptions> {
        let credentials = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.read()?)),
            _ => None,
        };
        Ok(crate::control_plane::EtcdOptions {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
            lease_ttl_s: self.lease_ttl_s,
            call_timeout: self.call_timeout,
            // A real etcd keeps a lease at least its TTL after the last renewal it received.
            early_expiry: std::time::Duration::ZERO,
            max_clock_drift_ppm: params.max_clock_drift_ppm,
            credentials,
            #[cfg(feature = "mutants")]
            mutation: Default::default(),
        })
    }
}

/// The Redis side: the ACL users (see `standby redis-setup`) and the quarantine directory.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// The user the controller drives each server as (grants, fences, REPLICAOF).
    pub agent_user: String,
    /// Its password.
    pub agent_password: Secret,
    /// The user applications write as, through the library only (`FCALL standby_write`).
    pub writer_user: String,
    /// Its password.
    pub writer_password: Secret,
    /// Where an old primary's divergent writes are exported before it follows the new one.
    pub quarantine_dir: PathBuf,
}

/// A password: in the config file, or in a file of its own (read at startup; one trailing
/// newline dropped) so that the config itself can be world-readable.
#[derive(Clone)]
pub enum Secret {
    /// Given inline.
    Inline(String),
    /// The file holding it (made absolute by [`Config::load`]).
    File(PathBuf),
    /// The environment variable holding it.
    Env(&'static str),
}

impl std::fmt::Debug for Secret {
    /// Never prints the password itself (configs end up in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => write!(f, "Secret(inline)"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
            Secret::Env(name) => write!(f, "Secret(env {name})"),
        }
    }
}

impl Secret {
    /// The password. A file's error names the file.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(password) => Ok(password.clone()),
            Secret::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
            }
            Secret::Env(name) => std::env::var(name).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name}: {e}"))
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    controller: RawController,
    #[serde(default)]
    params: Params,
    config_center: RawCenter,
    clusters: RawClusters,
    redis: RawRedis,
    users: RawUsers,
    etcd: Option<RawEtcd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    name: String,
    endpoints: Vec<String>,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_lease_ttl_s")]
    lease_ttl_s: u64,
    #[serde(default = "default_call_timeout_ms")]
    call_timeout_ms: u64,
    user: Option<String>,
    password_file: Option<PathBuf>,
}

fn default_prefix() -> String {
    "standby".into()
}

fn default_lease_ttl_s() -> u64 {
    5
}

fn default_call_timeout_ms() -> u64 {
    1000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    agent_user: String,
    agent_password: Option<String>,
    agent_password_file: Option<PathBuf>,
    writer_user: String,
    writer_password: Option<String>,
    writer_password_file: Option<PathBuf>,
    quarantine_dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    state_file: Option<PathBuf>,
    status_listen: SocketAddr,
    alarm_command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCenter {
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusters {
    a: Vec<String>,
    b: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    count: u32,
    #[serde(default)]
    assign: Vec<RawAssign>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssign {
    user: u32,
    shard: u16,
}

impl Config {
    /// Reads and validates `file`. Relative paths in it (the state file) are taken relative
    /// to the config file's directory, so the controller finds its state whatever its working
    /// directory.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(file, &text)?;
        let dir = file.parent().unwrap_or(Path::new(""));
        let absolute = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        if let Some(state_file) = &mut config.state_file {
            absolute(state_file);
        }
        if let Some(Secret::File(path)) = config.etcd.as_mut().and_then(|e| e.password.as_mut()) {
            absolute(path);
        }
        absolute(&mut config.redis.quarantine_dir);
        for secret in [
            &mut config.redis.agent_password,
            &mut config.redis.writer_password,
        ] {
            if let Secret::File(path) = secret {
                absolute(path);
            }
        }
        Ok(config)
    }

    /// Parses and validates `text`, naming `file` in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let spans = Spans::parse(file, text)?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| spans.toml_error(&e))?;
        let err = |path: &[&str], reason: String| spans.error(path, reason);
        if let Err(e) = raw.params.validate() {
            return Err(err(&["params", e.field()], e.to_string()));
        }
        let command = &raw.controller.alarm_command;
        if command.as_ref().is_some_and(|c| c.is_empty()) {
            let reason = "empty: give the program, then its arguments".to_string();
            return Err(err(&["controller", "alarm_command"], reason));
        }
        let topology = topology(&raw.clusters, &raw.users, &spans)?;
        let redis = redis(raw.redis, &spans)?;
        let etcd = match raw.etcd {
            Some(etcd) => Some(etcd_config(etcd, &spans)?),
            None => None,
        };
        match (&raw.controller.state_file, &etcd) {
            (Some(_), Some(_)) => {
                let reason = "not used with [etcd]: the state lives in etcd".to_string();
                return Err(err(&["controller", "state_file"], reason));
            }
            (None, None) => {
                let reason = "missing: give a state file, or an [etcd] table".to_string();
                return Err(err(&["controller", "state_file"], reason));
            }
            _ => {}
        }
        Ok(Config {
            file: file.to_path_buf(),
            state_file: raw.controller.state_file,
            etcd,
            status_listen: raw.controller.status_listen,
            alarm_command: raw.controller.alarm_command,
            params: raw.params,
            config_center_listen: raw.config_center.listen,
            topology,
            redis,
        })
    }

    /// The address the controller reaches its own config center at: the listen address, or
    /// loopback when it listens on every interface (`0.0.0.0` is no address to connect to).
    pub fn config_center_address(&self) -> SocketAddr {
        connectable(self.config_center_listen)
    }
}

/// `address`, with an unspecified IP replaced by loopback.
pub fn connectable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port())
        }
        _ => address,
    }
}

/// Checks the `[etcd]` table.
fn etcd_config(raw: RawEtcd, spans: &Spans) -> Result<EtcdConfig, ConfigError> {
    let err = |field: &str, reason: String| spans.error(&["etcd", field], reason);
    if raw.name.is_empty() || raw.name.contains(['/', ' ']) {
        return Err(err(
            "name",
            format!("{:?}: give a name without '/' or spaces", raw.name),
        ));
    }
    if raw.endpoints.is_empty() {
        return Err(err("endpoints", "no endpoint".into()));
    }
    for (i, endpoint) in raw.endpoints.iter().enumerate() {
        if let Err(reason) = check_address(endpoint) {
            let index = i.to_string();
            let reason = format!("{endpoint:?}: {reason}");
            return Err(spans.error(&["etcd", "endpoints", &index], reason));
        }
    }
    if raw.prefix.is_empty() || raw.prefix.ends_with('/') {
        let reason = format!("{:?}: give a prefix that does not end with '/'", raw.prefix);
        return Err(err("prefix", reason));
    }
    if !(2..=60).contains(&raw.lease_ttl_s) {
        return Err(err(
            "lease_ttl_s",
            format!("{}: must be 2 to 60", raw.lease_ttl_s),
        ));
    }
    // Six renewals a TTL, each within the call timeout: a leader must learn of a lost etcd
    // well inside its lease.
    let most = raw.lease_ttl_s * 1000 / 3;
    if raw.call_timeout_ms == 0 || raw.call_timeout_ms > most {
        let reason = format!(
            "{}: must be 1 to {most} (a third of lease_ttl_s)",
            raw.call_timeout_ms
        );
        return Err(err("call_timeout_ms", reason));
    }
    let password = match (&raw.user, raw.password_file) {
        (Some(_), Some(file)) => Some(Secret::File(file)),
        (Some(_), None) if std::env::var_os(ETCD_PASSWORD_ENV).is_some() => {
            Some(Secret::Env(ETCD_PASSWORD_ENV))
        }
        (Some(_), None) => {
            let reason = format!("give etcd.password_file, or set {ETCD_PASSWORD_ENV}");
            return Err(err("user", reason));
        }
        (None, Some(_)) => return Err(err("password_file", "needs etcd.user".into())),
        (None, None) => None,
    };
    let login_line = match spans.error(&["etcd", "user"], String::new()) {
        ConfigError::Invalid { line, .. } => line,
        ConfigError::Read { .. } => 0,
    };
    Ok(EtcdConfig {
        login_line,
        name: raw.name,
        endpoints: raw.endpoints,
        prefix: raw.prefix,
        lease_ttl_s: raw.lease_ttl_s,
        call_timeout: std::time::Duration::from_millis(raw.call_timeout_ms),
        user: raw.user,
        password,
    })
}

/// Checks the `[redis]` table: each password given exactly one way.
fn redis(raw: RawRedis, spans: &Spans) -> Result<RedisConfig, ConfigError> {
    let secret = |inline: Option<String>, file: Option<PathBuf>, name: &str| match (inline, file) {
        (Some(password), None) => Ok(Secret::Inline(password)),
        (None, Some(path)) => Ok(Secret::File(path)),
        (inline, _) => {
            let field = match inline {
                Some(_) => format!("{name}_password"),
                None => name.to_string(),
            };
            let reason = format!("give exactly one of {name}_password and {name}_password_file");
            Err(spans.error(&["redis", &field], reason))
        }
    };
    Ok(RedisConfig {
        agent_password: secret(raw.agent_password, raw.agent_password_file, "agent")?,
        writer_password: secret(raw.writer_password, raw.writer_password_file, "writer")?,
        agent_user: raw.agent_user,
        writer_user: raw.writer_user,
        quarantine_dir: raw.quarantine_dir,
    })
}

/// Checks the clusters and users and builds the topology.
fn topology(
    clusters: &RawClusters,
    users: &RawUsers,
    spans: &Spans,
) -> Result<Topology, ConfigError> {
    let (a, b) = (&clusters.a, &clusters.b);
    if a.is_empty() {
        return Err(spans.error(&["clusters", "a"], "no nodes".into()));
    }
    if a.len() != b.len() {
        let reason = format!(
            "{} nodes, but clusters.a has {} (node i of a pairs with node i of b)",
            b.len(),
            a.len()
        );
        return Err(spans.error(&["clusters", "b"], reason));
    }
    let Ok(nodes_per_cluster) = u16::try_from(a.len()) else {
        return Err(spans.error(
            &["clusters", "a"],
            format!("{} nodes, at most {} allowed", a.len(), u16::MAX),
        ));
    };
    let addresses = addresses(clusters, spans)?;
    let users = assign_users(users, nodes_per_cluster, spans)?;
    Ok(Topology {
        nodes_per_cluster,
        addresses,
        users,
    })
}

/// Every node's address, each checked for a `host:port` shape and refused when it appears
/// twice (two nodes on one address would make one node's failure count twice, or a backup
/// its own primary).
fn addresses(
    clusters: &RawClusters,
    spans: &Spans,
) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut addresses = BTreeMap::new();
    let mut seen: BTreeMap<&str, NodeId> = BTreeMap::new();
    for (cluster, list) in [(Cluster::A, &clusters.a), (Cluster::B, &clusters.b)] {
        let name = cluster.to_string();
        for (i, address) in list.iter().enumerate() {
            let node = NodeId::new(cluster, i as u16);
            let index = i.to_string();
            let path = ["clusters", name.as_str(), index.as_str()];
            if let Err(reason) = check_address(address) {
                return Err(spans.error(&path, format!("{address:?}: {reason}")));
            }
            if let Some(first) = seen.insert(address, node) {
                let reason = format!("{address} is node {node}, and already node {first}");
                return Err(spans.error(&path, reason));
            }
            addresses.insert(node, address.clone());
        }
    }
    Ok(addresses)
}

/// Whether `address` looks like `host:port` (the host is resolved at connect time).
fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("not host:port");
    };
    if host.is_empty() {
        return Err("no host");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port must be 1 to 65535"),
        Ok(_) => Ok(()),
    }
}

/// Users `0..count` round-robin over the shards, then the explicit assignments.
fn assign_users(
    users: &RawUsers,
    shards: u16,
    spans: &Spans,
) -> Result<BTreeMap<UserId, Shard>, ConfigError> {
    let mut map: BTreeMap<UserId, Shard> = (0..users.count)
        .map(|u| (UserId(u), Shard((u % shards as u32) as u16)))
        .collect();
    let mut assigned = BTreeSet::new();
    for (i, assign) in users.assign.iter().enumerate() {
        let index = i.to_string();
        let at = |field: &'static str| ["users", "assign", index.as_str(), field];
        if assign.user >= users.count {
            let reason = format!(
                "user {} does not exist (users.count = {})",
                assign.user, users.count
            );
            return Err(spans.error(&at("user"), reason));
        }
        if !assigned.insert(assign.user) {
            return Err(spans.error(
                &at("user"),
                format!("user {} is assigned twice", assign.user),
            ));
        }
        if assign.shard >= shards {
            let reason = format!(
                "shard {} does not exist (shards are 0 to {})",
                assign.shard,
                shards - 1
            );
            return Err(spans.error(&at("shard"), reason));
        }
        map.insert(UserId(assign.user), Shard(assign.shard));
    }
    Ok(map)
}

/// The parsed document with its byte spans, to find the line of a field by its path and the
/// path of a field by its position.
struct Spans<'a> {
    file: String,
    text: &'a str,
    table: DeTable<'a>,
}

impl<'a> Spans<'a> {
    fn parse(file: &Path, text: &'a str) -> Result<Spans<'a>, ConfigError> {
        let file = file.display().to_string();
        match DeTable::parse(text) {
            Ok(table) => Ok(Spans {
                file,
                text,
                table: table.into_inner(),
            }),
            Err(e) => {
                let line = line_of(text, e.span().map_or(0, |s| s.start));
                let reason = e.message().trim().to_string();
                let field = "syntax".to_string();
                Err(ConfigError::Invalid {
                    file,
                    line,
                    field,
                    reason,
                })
            }
        }
    }

    /// An error about the field at `path` (keys, and array indices as decimal text), on the
    /// line of its key, or of its nearest ancestor present in the file when it is missing
    /// (a default that does not fit the others).
    fn error(&self, path: &[&str], reason: String) -> ConfigError {
        let offset = locate(&self.table, path).unwrap_or(0);
        ConfigError::Invalid {
            file: self.file.clone(),
            line: line_of(self.text, offset),
            field: dotted(path.iter().copied()),
            reason,
        }
    }

    /// serde's error, with the path of whatever its span points at.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map_or(0, |s| s.start);
        let mut path = Vec::new();
        path_at(&self.table, offset, &mut path);
        let reason = e.message().trim().to_string();
        // A missing field is reported at its table's header: name the field itself.
        if let Some(name) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            path.push(name.to_string());
        }
        ConfigError::Invalid {
            file: self.file.clone(),
            line: line_of(self.text, offset),
            field: dotted(path.iter().map(String::as_str)),
            reason,
        }
    }
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `["users", "assign", "1", "shard"]` as `users.assign[1].shard`.
fn dotted<'s>(path: impl Iterator<Item = &'s str>) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

/// The offset of the deepest key (or array element) along `path` that the file has.
fn locate(table: &DeTable<'_>, path: &[&str]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let (key, value) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    Some(locate_value(value.get_ref(), rest).unwrap_or(key.span().start))
}

fn locate_value(value: &DeValue<'_>, path: &[&str]) -> Option<usize> {
    match value {
        DeValue::Table(table) => locate(table, path),
        DeValue::Array(items) => {
            let (first, rest) = path.split_first()?;
            let item = items.get(first.parse::<usize>().ok()?)?;
            Some(locate_value(item.get_ref(), rest).unwrap_or(item.span().start))
        }
        _ => None,
    }
}

/// Pushes onto `path` the keys leading to the key or value at byte `offset`; whether found.
fn path_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) || value_at(value.get_ref(), value.span(), offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn value_at(
    value: &DeValue<'_>,
    span: std::ops::Range<usize>,
    offset: usize,
    path: &mut Vec<String>,
) -> bool {
    let inside = match value {
        DeValue::Table(table) => path_at(table, offset, path),
        DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.push(i.to_string());
            let found = value_at(item.get_ref(), item.span(), offset, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    inside || span.contains(&offset)
}
