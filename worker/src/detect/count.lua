-- Counts one batch's matching requests for the streaming rules, atomically, for every
-- (rule, address) the batch touches. See worker/src/detect/mod.rs.
--
-- KEYS, per group g: KEYS[2g-1] the counter (sorted set: member = "<batch id>:<index>",
--   score = the request's time in microseconds, exact in a double until the year 2255),
--   KEYS[2g] the group's crossing mark.
-- ARGV[1]: this batch's id; then per group: window_us, count, n, and n pairs score, member.
--
-- Returns per group {state, count, first_us, last_us}:
--   0: below the threshold (count = requests counted in the window);
--   1: this call crossed the threshold: the counter is emptied, the mark remembers the
--      crossing (its last request's time and this batch) for one window;
--   2: no new crossing, but this batch made the remembered one (a batch delivered again):
--      the caller acts again, idempotently, on the same crossing.
-- Members at or before the mark are dropped, so a batch delivered again never counts twice.
--
-- Times go to Redis as strings: a Lua number would be written with 14 digits, and a
-- microsecond time has 16.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local batch = ARGV[1]
local out = {}
local a = 2
for g = 1, #KEYS / 2 do
  local key, mark_key = KEYS[2 * g - 1], KEYS[2 * g]
  local window_us, count, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local window_ms = math.max(1, math.ceil(window_us / 1000))
  a = a + 3
  for i = 1, n do
    redis.call('ZADD', key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  local mark = redis.call('GET', mark_key)
  local mark_us, mark_batch = nil, nil
  if mark then
    local sep = string.find(mark, ':', 1, true)
    mark_us = string.sub(mark, 1, sep - 1)
    mark_batch = string.sub(mark, sep + 1)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', mark_us)
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', now_us - window_us))
  -- At rest a group holds fewer than `count` entries (reaching it empties the group), so
  -- the rule's count bounds the memory per address.
  local have = redis.call('ZCARD', key)
  if have >= count then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('SET', mark_key, last[2] .. ':' .. batch, 'PX', window_ms)
    redis.call('DEL', key)
    out[g] = {1, have, tonumber(first[2]), tonumber(last[2])}
  elseif mark_batch == batch then
    out[g] = {2, count, tonumber(mark_us), tonumber(mark_us)}
  else
    if have > 0 then
      redis.call('PEXPIRE', key, window_ms)
    end
    out[g] = {0, have, 0, 0}
  end
end
return out
