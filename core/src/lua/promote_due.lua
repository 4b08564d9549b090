-- Moves at most ARGV[2] due jobs from a queue's `:scheduled` set to its active list.
--
-- Retried jobs land in `:scheduled` (apalis-redis's handle_results). apalis-redis's fetch
-- promotes all due ones with a single `unpack`, which fails at 8,000; calling this in a
-- loop first keeps that set small, in chunks `unpack` can carry.
--
-- KEYS[1]: the scheduled set   KEYS[2]: the active list   KEYS[3]: the signal list
-- ARGV[1]: now, in seconds since the epoch   ARGV[2]: most jobs to move
-- Returns: the number of jobs moved.
local ids = redis.call("zrangebyscore", KEYS[1], 0, ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
if #ids > 0 then
    redis.call("rpush", KEYS[2], unpack(ids))
    redis.call("zrem", KEYS[1], unpack(ids))
    redis.call("del", KEYS[3])
    redis.call("lpush", KEYS[3], 1)
end
return #ids
