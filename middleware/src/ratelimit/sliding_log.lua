-- One rate-limit decision for one client of one rule, atomically: a sliding log.
--
-- KEYS[1]  the client's log: a sorted set of its accepted requests, scored by their time
--          in milliseconds (Redis's clock, so web instances with skewed clocks agree)
-- ARGV[1]  window in milliseconds
-- ARGV[2]  limit: accepted requests allowed in any window-long span
-- Returns {allowed (1 or 0), remaining, ms until the oldest accepted request leaves the
-- window (when the next request can be accepted again)}.
--
-- Why a log and not a fixed window or GCRA: a fixed window lets a client send the limit at
-- the end of one window and again at the start of the next; GCRA lets one more request
-- through a window-long span than the limit (the burst, then one more after one emission
-- interval). A log holds at most `limit` members per key, which the settings bound.
-- Rejected requests are not logged, so hammering does not extend a client's wait.
-- Numbers handed to redis.call go through string.format: Lua 5.1 would print them with
-- 14 significant digits.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local key = KEYS[1]

redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window))
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  -- Unique member even for two requests in the same millisecond.
  redis.call('ZADD', key, string.format('%d', now), t[1] .. '.' .. t[2] .. '.' .. count)
  count = count + 1
  allowed = 1
end
-- Every key expires once its newest entry has left the window.
redis.call('PEXPIRE', key, string.format('%d', window + 1000))
local reset = 0
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if oldest[2] then
  reset = tonumber(oldest[2]) + window - now
end
return {allowed, math.max(0, limit - count), reset}
