-- Gives the metadata hash of every live worker of a queue a time to live, renewed while
-- the worker heartbeats.
--
-- apalis-redis writes `{queue}:workers:metadata:{name}` once, at registration, and never
-- removes it; names are new on every restart, so a host that restarts its workers leaves
-- one hash per incarnation forever. Renewed here on each maintenance pass, a live
-- worker's hash stays; a stopped or killed worker's expires. (Its in-flight set is not
-- given a TTL: it holds jobs until orphan recovery re-queues them, and an empty set does
-- not exist in Redis.)
--
-- KEYS[1]: the workers sorted set   KEYS[2]: the metadata prefix (`{queue}:workers:metadata`)
-- ARGV[1]: unix seconds before which a heartbeat is stale   ARGV[2]: TTL in seconds
-- Returns: the number of hashes renewed.
local renewed = 0
for _, name in ipairs(redis.call("zrangebyscore", KEYS[1], ARGV[1], "+inf")) do
    renewed = renewed + redis.call("expire", KEYS[2] .. ":" .. name, ARGV[2])
end
return renewed
