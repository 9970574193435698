//! How to prepare each redis-server for standby: an ACL file (`standby redis-setup`) and the
//! server settings naming it. A file rather than `ACL SETUSER` at runtime, because users set
//! at runtime are gone after a restart, and a restarted node must come back just as locked.
//!
//! The users (docs/redis-fence-experiments.md, 1b):
//! - `default`: `off`, so no client can act without logging in. It must not be read-only as
//!   the brief first had it: Redis 7.0.15 checks the EXEC of every MULTI it replays from the
//!   AOF against the default user, and the library's writes are replicated as MULTI/EXEC, so
//!   a read-only default user makes a restarted node drop every write it had acknowledged
//!   (seen: "NOPERM ACLs rules changed between the moment the transaction was accumulated and
//!   the EXEC call" in the log, and the writes gone, not even in the quarantine). Hence it
//!   holds exactly the commands the library's writes (and its log trim) replicate as, and
//!   cannot log in.
//! - `reader` (no password): reads only. Through the fence (`FCALL_RO standby_read`, which
//!   runs TIME and GET as the caller: hence `+time`), a read is linearizable; its plain reads
//!   (`+@read`, kept for inspection and for the tests' checks) are not: a deposed primary
//!   answers them with what it had. No plain write reaches the data unfenced.
//! - the writer: the library's writes (`FCALL standby_write`). ACL applies inside FCALL, so it
//!   must hold the commands the library runs (`set del incr xadd time`); it could plain-write
//!   if its credentials leaked: protect them.
//! - the agent (the controller): grants and fences (`echo` gates them in the library), status,
//!   the suffix export, the log's trim (`FCALL standby_trim`, which runs XTRIM), REPLICAOF,
//!   FUNCTION, INFO, and replication itself (replicas log in to their master as this user,
//!   since `default` cannot). No data writes, and keys `standby:*` only.

use crate::real::config::RedisConfig;

/// The ACL file's lines (`user NAME RULES...`), passwords included: keep it mode 0600.
pub fn acl_file(redis: &RedisConfig) -> std::io::Result<String> {
    let agent = redis.agent_password.read()?;
    let writer = redis.writer_password.read()?;
    Ok(format!(
        "user default off nopass ~* resetchannels -@all +multi +exec +set +del +incr +xadd +xtrim\n\
         user reader on nopass ~* resetchannels -@all +@read +fcall_ro +time +auth +hello +ping\n\
         user {writer_user} on >{writer} ~* resetchannels -@all +@read +fcall +fcall_ro +time +set +del +incr +xadd +auth +hello +ping\n\
         user {agent_user} on >{agent} ~standby:* resetchannels -@all +fcall +fcall_ro +echo +time +get +xrange +xtrim +replicaof +function +info +ping +auth +hello +psync +replconf +sync\n",
        writer_user = redis.writer_user,
        agent_user = redis.agent_user,
    ))
}

/// The redis.conf lines that load `acl_path` and let replicas log in as the agent.
pub fn server_settings(
    redis: &RedisConfig,
    acl_path: &str,
) -> std::io::Result<Vec<(String, String)>> {
    Ok(vec![
        ("aclfile".into(), acl_path.into()),
        ("masteruser".into(), redis.agent_user.clone()),
        ("masterauth".into(), redis.agent_password.read()?),
        // The data and the library's log must survive a restart of the node, acknowledged
        // writes included. With `everysec` a write may be acknowledged while its AOF write is
        // postponed behind a slow background fsync (up to 2 s); `always` costs an fsync per
        // write, and an acknowledged write is then on disk.
        ("appendonly".into(), "yes".into()),
        ("appendfsync".into(), "always".into()),
        // A full sync (a backup's first, an old primary's rejoin) is diskless by default and
        // waits 5 s for more replicas to share the transfer; a primary here has one replica,
        // and until it synced a failover would find the backup empty.
        ("repl-diskless-sync-delay".into(), "0".into()),
    ])
}
