//! The Lua scripts behind [`RedisStore`](crate::RedisStore): one per write,
//! so that a write and its log entry are atomic. Everything a script
//! stores is encoded in Rust (the notification's JSON, each event's frame
//! but its `id:` line); the scripts only assign positions, check versions
//! and apply what they are given.

use std::sync::LazyLock;

use redis::Script;

/// Shared functions: taking positions, appending, pruning.
///
/// Times come from Redis's own clock (`TIME`), so they grow with positions
/// and the newest expired position can be found by bisection.
const LOG_FUNCTIONS: &str = r#"
local function int(n) return string.format('%d', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function entry_time(entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then return tonumber(fields[i + 1]) end
  end
  return 0
end

-- The highest position the retention no longer keeps.
local function floor_of(log, pruned, head, max_events, max_age, now)
  local floor = tonumber(redis.call('GET', pruned) or '0')
  if max_events ~= '' then floor = math.max(floor, head - tonumber(max_events)) end
  if max_age ~= '' then
    local cutoff = now - tonumber(max_age)
    local lo, hi = floor, head
    while lo < hi do
      local mid = math.floor((lo + hi + 1) / 2)
      local found = redis.call('XRANGE', log, '0-' .. int(mid), '+', 'COUNT', 1)
      if #found == 0 then
        hi = mid - 1
      else
        local position = tonumber(string.match(found[1][1], '^0%-(%d+)$'))
        if entry_time(found[1]) < cutoff then
          lo = math.max(lo, math.min(position, hi))
        else
          hi = mid - 1
        end
      end
    end
    floor = math.max(floor, lo)
  end
  return floor
end

-- Trims what the retention no longer keeps; returns the audiences whose
-- indexes hold trimmed positions (the caller cleans them).
local function prune(log, pruned, head, max_events, max_age, now)
  local floor = floor_of(log, pruned, head, max_events, max_age, now)
  local before = tonumber(redis.call('GET', pruned) or '0')
  local audiences = {}
  if floor > before then
    local seen = {}
    for _, entry in ipairs(redis.call('XRANGE', log, '-', '0-' .. int(floor))) do
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'a' and not seen[fields[i + 1]] then
          seen[fields[i + 1]] = true
          table.insert(audiences, fields[i + 1])
        end
      end
    end
    redis.call('XTRIM', log, 'MINID', '0-' .. int(floor + 1))
    redis.call('SET', pruned, int(floor))
  end
  return audiences
end

-- This server's replication id: it changes when a replica is promoted.
local function replication_id()
  return string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
end

-- Appends events (audience key and frame without its id line each) and
-- returns the epoch, the first position, the time, and the audiences to
-- clean after pruning.
--
-- A new epoch starts when the log's data set is on a server with another
-- replication history than the one the epoch was written on: a replica
-- promoted after the primary died (asynchronous replication may have lost
-- the primary's last writes, and their positions would be handed out
-- again). Every client holding a position of the old epoch then resets,
-- instead of silently skipping the writes that took those positions.
local function append(head, epoch_key, log, pruned, indexes, audiences, bodies, new_epoch, max_events, max_age)
  local epoch = redis.call('GET', epoch_key)
  local written_on = redis.call('GET', epoch_key .. ':replid')
  local server = replication_id()
  if not epoch or (written_on and server and written_on ~= server) then
    epoch = new_epoch
    redis.call('SET', epoch_key, epoch)
  end
  if server and written_on ~= server then
    redis.call('SET', epoch_key .. ':replid', server)
  end
  local now = now_ms()
  local n = #bodies
  local last = redis.call('INCRBY', head, n)
  local first = last - n + 1
  for i = 1, n do
    local position = int(first + i - 1)
    redis.call('XADD', log, '0-' .. position, 'a', audiences[i], 't', int(now),
      'f', 'id: ' .. epoch .. '.' .. position .. '\n' .. bodies[i])
    redis.call('ZADD', indexes[i], position, position)
  end
  local cleaned = {}
  if (max_events ~= '' or max_age ~= '') and math.floor((first - 1) / 64) ~= math.floor(last / 64) then
    cleaned = prune(log, pruned, last, max_events, max_age, now)
  end
  return epoch, first, now, cleaned
end
"#;

/// Applies inbox operations under version checks, then appends events.
///
/// KEYS: head, epoch, log, pruned, token; then per user: notifications,
/// ids, unread, version; then one index key per event.
/// ARGV: token, new epoch, max events, max age, users, events; then per
/// user: expected version, operation count, operations (`hset id json`,
/// `zadd id`, `sadd id`, `srem id`, `hdel id`, `zrem id`, `delunread -`);
/// then per event: audience key, body.
///
/// Returns `{'conflict'}` when a user's version moved (the caller reads
/// again and retries), `{'done', epoch, first, now}` when this token's
/// write already happened (a retried request), or `{'ok', epoch, first,
/// now, audiences to clean…}`.
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG_FUNCTIONS}
local token = ARGV[1]
if token ~= '' then
  local done = redis.call('GET', KEYS[5])
  if done then
    local epoch, first, now = string.match(done, '^(%S+) (%d+) (%d+)$')
    return {{'done', epoch, first, now}}
  end
end
local users = tonumber(ARGV[5])
local events = tonumber(ARGV[6])
local arg = 7
local plans = {{}}
for u = 1, users do
  local base = 5 + (u - 1) * 4
  local expected = ARGV[arg]
  local count = tonumber(ARGV[arg + 1])
  arg = arg + 2
  if (redis.call('GET', KEYS[base + 4]) or '0') ~= expected then return {{'conflict'}} end
  local ops = {{}}
  for _ = 1, count do
    local op = ARGV[arg]
    if op == 'hset' then
      table.insert(ops, {{op, ARGV[arg + 1], ARGV[arg + 2]}})
      arg = arg + 3
    else
      table.insert(ops, {{op, ARGV[arg + 1]}})
      arg = arg + 2
    end
  end
  plans[u] = {{base, ops}}
end
for u = 1, users do
  local base, ops = plans[u][1], plans[u][2]
  for _, op in ipairs(ops) do
    local name, id = op[1], op[2]
    if name == 'hset' then redis.call('HSET', KEYS[base + 1], id, op[3])
    elseif name == 'zadd' then redis.call('ZADD', KEYS[base + 2], id, id)
    elseif name == 'sadd' then redis.call('SADD', KEYS[base + 3], id)
    elseif name == 'srem' then redis.call('SREM', KEYS[base + 3], id)
    elseif name == 'hdel' then redis.call('HDEL', KEYS[base + 1], id)
    elseif name == 'zrem' then redis.call('ZREM', KEYS[base + 2], id)
    elseif name == 'delunread' then redis.call('DEL', KEYS[base + 3])
    end
  end
  redis.call('INCR', KEYS[base + 4])
end
local indexes, audiences, bodies = {{}}, {{}}, {{}}
for e = 1, events do
  table.insert(indexes, KEYS[5 + users * 4 + e])
  table.insert(audiences, ARGV[arg])
  table.insert(bodies, ARGV[arg + 1])
  arg = arg + 2
end
local epoch, first, now, cleaned = append(KEYS[1], KEYS[2], KEYS[3], KEYS[4], indexes, audiences, bodies, ARGV[2], ARGV[3], ARGV[4])
if token ~= '' then
  redis.call('SET', KEYS[5], epoch .. ' ' .. int(first) .. ' ' .. int(now), 'EX', 600)
end
local reply = {{'ok', epoch, int(first), int(now)}}
for _, audience in ipairs(cleaned) do table.insert(reply, audience) end
return reply"#
    ))
});

/// A principal's events after a position, atomically with the head.
///
/// KEYS: head, epoch, log, pruned, then one index key per audience the
/// principal reads. ARGV: the cursor's epoch and position, the limit, max
/// events, max age.
///
/// Returns `{'gone', epoch, head}` or `{'events', epoch, head, more (0 or
/// 1), frames…}`; an empty log answers `{'empty'}`.
pub(crate) static SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG_FUNCTIONS}
local epoch = redis.call('GET', KEYS[2])
if not epoch then return {{'empty'}} end
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[2])
if ARGV[1] ~= epoch or after > head then return {{'gone', epoch, int(head)}} end
local floor = floor_of(KEYS[3], KEYS[4], head, ARGV[4], ARGV[5], now_ms())
if after < floor then return {{'gone', epoch, int(head)}} end
local limit = tonumber(ARGV[3])
local positions = {{}}
for i = 5, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', int(floor))
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. int(after), int(head), 'LIMIT', 0, limit + 1)) do
    table.insert(positions, tonumber(p))
  end
end
table.sort(positions)
local more = 0
if #positions > limit then more = 1 end
local reply = {{'events', epoch, int(head), more}}
for i = 1, math.min(limit, #positions) do
  local found = redis.call('XRANGE', KEYS[3], '0-' .. int(positions[i]), '0-' .. int(positions[i]))
  if #found == 1 then
    local fields = found[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'f' then table.insert(reply, fields[j + 1]) end
    end
  end
end
return reply"#
    ))
});

/// The epoch (created if the log has none yet) and the head.
///
/// KEYS: head, epoch. ARGV: a new epoch. Returns `{epoch, head}`.
pub(crate) static HEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
return {epoch, string.format('%d', tonumber(redis.call('GET', KEYS[1]) or '0'))}"#,
    )
});
