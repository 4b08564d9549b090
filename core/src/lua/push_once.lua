-- Claims KEYS[5] and, only if the claim is new, pushes one job like push_ready.lua.
-- Several schedulers racing for the same window: exactly one pushes, atomically, so a
-- scheduler that dies between claiming and pushing cannot lose the window's job.
--
-- KEYS[1]: the task data hash      KEYS[2]: the active list
-- KEYS[3]: the signal list         KEYS[4]: the task metadata prefix
-- KEYS[5]: the claim key
-- ARGV[1]: claim TTL in seconds    ARGV[2]: task_id    ARGV[3]: task_data
-- Returns: 1 if this call pushed the job, 0 if the claim was taken already.
if not redis.call("set", KEYS[5], ARGV[2], "NX", "EX", tonumber(ARGV[1])) then
    return 0
end
redis.call("hsetnx", KEYS[1], ARGV[2], ARGV[3])
redis.call("hset", KEYS[4] .. ":" .. ARGV[2],
    "attempts", 0, "max_attempts", 25, "status", "Pending", "idempotency_key", "")
redis.call("rpush", KEYS[2], ARGV[2])
redis.call("del", KEYS[3])
redis.call("lpush", KEYS[3], 1)
return 1
