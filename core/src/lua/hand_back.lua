-- A stopping worker hands back the jobs it holds and unregisters, in one step.
--
-- apalis-redis leaves a stopped worker's fetched jobs in its in-flight set; they return
-- only when another worker's orphan recovery sees the stopped one miss its heartbeats
-- (heartbeat × missed heartbeats later, and never if no other worker runs). Handed back
-- here they go to the front of the active list, first in line for the next fetch. A job
-- the worker was still running may so run twice; every iptrack job is idempotent.
--
-- KEYS[1]: the workers sorted set    KEYS[2]: this worker's in-flight set
-- KEYS[3]: the active list           KEYS[4]: the signal list
-- KEYS[5]: this worker's metadata hash
-- ARGV[1]: the worker's name   ARGV[2]: most ids per LPUSH (Lua's unpack limit)
-- Returns: the number of jobs handed back.
local ids = redis.call("smembers", KEYS[2])
local chunk = tonumber(ARGV[2])
for first = 1, #ids, chunk do
    redis.call("lpush", KEYS[3], unpack(ids, first, math.min(first + chunk - 1, #ids)))
end
if #ids > 0 then
    redis.call("del", KEYS[2])
    -- Wake idle workers, as apalis-redis does after a push.
    redis.call("del", KEYS[4])
    redis.call("lpush", KEYS[4], 1)
end
redis.call("zrem", KEYS[1], ARGV[1])
redis.call("del", KEYS[5])
return #ids
