//! Small Redis helpers: bounded connections, error texts, replication state, bulk reads.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use std::time::Duration;

/// The deadline of one connection attempt and of one reply, for every writer and probe.
pub const CALL: Duration = Duration::from_millis(500);

/// A login: user and password (`None`: no AUTH at all).
pub type Auth = Option<(String, String)>;

/// A connection to `address`, logged in as `auth`, each reply waited for up to `CALL`. The
/// whole attempt (TCP connect and login) is bounded by `CALL` too: a SIGSTOPped server
/// accepts the TCP connection in the kernel but never answers.
pub async fn connect(address: &str, auth: &Auth) -> Result<MultiplexedConnection, String> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{address}: not host:port"))?;
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo {
            username: auth.as_ref().map(|a| a.0.clone()),
            password: auth.as_ref().map(|a| a.1.clone()),
            ..RedisConnectionInfo::default()
        },
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CALL)
        .set_response_timeout(CALL);
    let attempt = async {
        Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    };
    match tokio::time::timeout(CALL, attempt).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(format!("connect {address}: {e}")),
        Err(_) => Err(format!("connect {address}: no connection within {CALL:?}")),
    }
}

/// A server's error reply as `CODE detail`, or `None` for a transport failure (refused,
/// reset, timed out: the command may or may not have run).
pub fn server_error(e: &redis::RedisError) -> Option<String> {
    let code = e.code()?;
    let text = match e.detail() {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_string(),
    };
    Some(text.trim().to_string())
}

/// The first word of a server error (`READONLY`, `FENCED`, ...).
pub fn error_code(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or("error")
        .to_string()
}

/// `INFO replication` of `address` as key/value pairs.
pub async fn info_replication(address: &str, auth: &Auth) -> Result<Vec<(String, String)>, String> {
    let mut con = connect(address, auth).await?;
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut con)
        .await
        .map_err(|e| format!("INFO {address}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Whether `address` is a replica of the server on `master_port` with its link up.
pub async fn is_replica_of(address: &str, auth: &Auth, master_port: u16) -> bool {
    let Ok(info) = info_replication(address, auth).await else {
        return false;
    };
    let field = |name: &str| {
        info.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    field("role") == Some("slave")
        && field("master_port") == Some(master_port.to_string().as_str())
        && field("master_link_status") == Some("up")
}

/// Whether `address` answers PING.
pub async fn answers(address: &str, auth: &Auth) -> bool {
    let Ok(mut con) = connect(address, auth).await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .is_ok()
}

/// `ROLE`'s first element (`master`, `slave`, `sentinel`).
pub async fn role(con: &mut MultiplexedConnection) -> Result<String, String> {
    let reply: redis::Value = redis::cmd("ROLE")
        .query_async(con)
        .await
        .map_err(|e| server_error(&e).unwrap_or_else(|| e.to_string()))?;
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
            other => Err(format!("ROLE: unexpected {other:?}")),
        },
        other => Err(format!("ROLE: unexpected {other:?}")),
    }
}

/// The values of `keys` on `address` (MGET in batches).
pub async fn read_all(
    address: &str,
    auth: &Auth,
    keys: &[String],
) -> Result<Vec<Option<String>>, String> {
    let mut con = connect(address, auth).await?;
    let mut values = Vec::with_capacity(keys.len());
    for batch in keys.chunks(500) {
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(batch)
            .query_async(&mut con)
            .await
            .map_err(|e| format!("MGET on {address}: {e}"))?;
        if got.len() != batch.len() {
            return Err(format!(
                "MGET on {address}: {} values for {} keys",
                got.len(),
                batch.len()
            ));
        }
        values.extend(got);
    }
    Ok(values)
}
