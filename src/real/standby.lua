#!lua name=standby
--[[
Epoch + lease fence for one redis-server (Redis 7.0 Functions). Load it on the master only:
FUNCTION LOAD is a write, so replicas refuse it (READONLY) and get it by replication instead.

The node state (epoch, role, lease) lives in this chunk's local table, not in the keyspace:
  * it must be per node, but every key of a master reaches its replicas (commands, and the
    RDB of any full sync, whatever redis.set_repl says), so a promoted replica would inherit
    its old master's lease;
  * a replica refuses keyspace writes, but it may run a no-writes function, which can still
    update this table, so the agent can fence a replica before it ever becomes a master;
  * it vanishes on restart (RDB or AOF), DEBUG RELOAD, a full sync and FUNCTION LOAD REPLACE
    of this library, and a node without state refuses every write: forgetting is fail-safe.
    The agent keeps epoch and role on its own disk and grants them again.

Time is redis.call('TIME'), read when the write executes, never when it was sent: a write
queued behind a paused (SIGSTOP) server is judged at execution. 7.0 replicates scripts by
effects, so TIME before writes is allowed and replicas never re-evaluate it.

Plain write commands are not covered by this library: users other than the library's own
must get no @write in ACL (ACL applies inside FCALL too, so the library's user needs them).
Grant and fence are no-writes (they must run on replicas), so FCALL_RO alone would reach
them; agent_only() makes them need +echo, which only the agent's ACL user may have.
]]

-- A grant further ahead than this is a caller bug (wrong clock or unit), not a lease.
local MAX_LEASE_MS = 60000

local node = { epoch = 0, role = 'fenced', deadline = 0 }

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int_arg(v, what)
  local n = tonumber(v)
  if n == nil or n < 0 or n ~= math.floor(n) then
    return nil, redis.error_reply('BADARG ' .. what .. ' must be a non-negative integer')
  end
  return n
end

-- ACL runs inside functions as the caller: NOPERM here unless the caller may run ECHO.
local function agent_only()
  redis.call('ECHO', 'standby-agent')
end

-- Why a write of `epoch` may not run now, or nil if it may.
local function refusal(epoch, now)
  if node.role == 'fenced' then return 'FENCED ' .. node.epoch end
  if epoch ~= node.epoch then return 'STALE_EPOCH ' .. node.epoch end
  if node.role ~= 'primary' then return 'NOT_PRIMARY ' .. node.role end
  if now >= node.deadline then return 'LEASE_EXPIRED ' .. (now - node.deadline) end
  return nil
end

-- The LSN is the log's stream ID (0-<lsn>), so the suffix is one XRANGE and replicas get the
-- same IDs. standby:lsn and standby:log are used undeclared: fine outside Redis Cluster.
local function logged(op, epoch, key, value)
  local now = now_ms()
  local why = refusal(epoch, now)
  if why then return nil, redis.error_reply(why) end
  local lsn = redis.call('INCR', 'standby:lsn')
  -- The log entry goes first: if it fails, the data write is not done either.
  redis.call('XADD', 'standby:log', '0-' .. lsn,
    'lsn', lsn, 'epoch', epoch, 'op', op, 'key', key, 'value', value)
  return { lsn, node.deadline - now }
end

-- args: epoch, role ('primary'|'backup'), lease deadline in unix ms on THIS server's clock.
-- Absolute, not relative: the agent derives it from a TIME read taken before it sent the
-- report the lease is anchored to, so a grant delivered late (agent paused, server paused
-- with the FCALL queued, retries) can only carry a deadline already behind us; a relative
-- lease_ms would restart the lease at arrival and outlive the controller's bound.
redis.register_function{function_name = 'standby_grant', flags = { 'no-writes', 'allow-stale' },
  callback = function(keys, args)
    agent_only()
    local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
    local role = args[2]
    local deadline, e2 = int_arg(args[3] or 0, 'deadline'); if e2 then return e2 end
    if role ~= 'primary' and role ~= 'backup' then
      return redis.error_reply('BADARG role must be primary or backup')
    end
    if epoch < node.epoch then return redis.error_reply('STALE_EPOCH ' .. node.epoch) end
    -- Fencing an epoch is final for writes: only a newer epoch may make the node primary.
    -- It may still follow in that epoch (the old primary rejoining), which writes nothing.
    if epoch == node.epoch and node.role == 'fenced' and role == 'primary' then
      return redis.error_reply('FENCED ' .. node.epoch)
    end
    local now = now_ms()
    if role == 'primary' and deadline > now + MAX_LEASE_MS then
      return redis.error_reply('BADARG deadline more than ' .. MAX_LEASE_MS .. ' ms ahead')
    end
    if role == 'primary' and epoch == node.epoch and node.role == 'primary' then
      deadline = math.max(deadline, node.deadline) -- renewals arrive out of order: never shorten
    elseif role ~= 'primary' then
      deadline = 0
    end
    node.epoch, node.role, node.deadline = epoch, role, deadline
    return role == 'primary' and (deadline - now) or 0 -- lease ms left
  end }

-- args: epoch. Always applies (fencing is never unsafe); the epoch only moves forward.
redis.register_function{function_name = 'standby_fence', flags = { 'no-writes', 'allow-stale' },
  callback = function(keys, args)
    agent_only()
    local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
    node.epoch = math.max(node.epoch, epoch)
    node.role, node.deadline = 'fenced', 0
    return node.epoch
  end }

-- keys: the key; args: epoch, value. Returns [lsn, lease ms left when it ran]. The reply can
-- reach the client after the lease ended (server paused after the write ran but before it
-- replied): a client that took longer than "ms left" from send to reply must treat the
-- write as of unknown fate (maybe only in this node's divergent suffix), not as acked.
redis.register_function('standby_write', function(keys, args)
  local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
  local res, err = logged('set', epoch, keys[1], args[2])
  if err then return err end
  redis.call('SET', keys[1], args[2])
  return res
end)

-- keys: the key; args: epoch. Like standby_write (logged even if the key did not exist).
redis.register_function('standby_del', function(keys, args)
  local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
  local res, err = logged('del', epoch, keys[1], '')
  if err then return err end
  redis.call('DEL', keys[1])
  return res
end)

-- keys: the key; args: epoch. A read answered only while this node may answer it
-- linearizably: primary in exactly that epoch under an unexpired lease, by the same rule as
-- a write (no other node can have been promoted, and taken a write, before the lease ends).
-- A deposed primary, cut off from the controller but not from its users, refuses: it never
-- serves a value the new primary has overwritten. Returns [value (nil if none), lease ms
-- left]. No-writes, so FCALL_RO (and the reader user) may call it.
redis.register_function{function_name = 'standby_read', flags = { 'no-writes' },
  callback = function(keys, args)
    local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
    local now = now_ms()
    local why = refusal(epoch, now)
    if why then return redis.error_reply(why) end
    return { redis.call('GET', keys[1]), node.deadline - now }
  end }

-- [epoch, role, lsn, lease ms left (negative: expired), now ms, trimmed lsn]
redis.register_function{function_name = 'standby_status', flags = { 'no-writes', 'allow-stale' },
  callback = function(keys, args)
    local now = now_ms()
    local lsn = tonumber(redis.call('GET', 'standby:lsn') or '0')
    local left = node.role == 'primary' and (node.deadline - now) or -1
    local first = redis.call('XRANGE', 'standby:log', '-', '+', 'COUNT', 1)[1]
    local trimmed = first and (tonumber(string.match(first[1], '^0%-(%d+)$')) - 1) or lsn
    return { node.epoch, node.role, lsn, left, now, trimmed }
  end }

-- args: epoch, through. Discards the log up to `through`, which the controller saw the
-- backup hold (see protocol::Trim in the Rust crate: no later quarantine needs it). Only the
-- primary of `epoch` trims, never past its last entry; XTRIM replicates, so the backup
-- discards the same. Returns how many entries went.
redis.register_function('standby_trim', function(keys, args)
  agent_only()
  local epoch, e = int_arg(args[1], 'epoch'); if e then return e end
  local through, e2 = int_arg(args[2], 'through'); if e2 then return e2 end
  if node.role ~= 'primary' or epoch ~= node.epoch then return 0 end
  local lsn = tonumber(redis.call('GET', 'standby:lsn') or '0')
  return redis.call('XTRIM', 'standby:log', 'MINID', '0-' .. (math.min(through, lsn) + 1))
end)

-- args: after_lsn [, count]. The log entries with lsn > after_lsn, oldest first, as XRANGE
-- returns them: the divergent suffix to export before this node resyncs from a new primary.
redis.register_function{function_name = 'standby_suffix', flags = { 'no-writes', 'allow-stale' },
  callback = function(keys, args)
    local after, e = int_arg(args[1], 'after_lsn'); if e then return e end
    if args[2] then
      return redis.call('XRANGE', 'standby:log', '(0-' .. after, '+', 'COUNT', args[2])
    end
    return redis.call('XRANGE', 'standby:log', '(0-' .. after, '+')
  end }
