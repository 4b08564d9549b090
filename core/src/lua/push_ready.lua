-- Pushes jobs straight onto a queue's active list, in apalis-redis 1.0's layout.
--
-- apalis-redis's own push puts every job into the `:scheduled` sorted set, and its fetch
-- script moves all due entries with one `unpack`, which fails once 8,000 or more wait
-- (a backlog after an outage). Jobs pushed here never touch that set.
--
-- KEYS[1]: the task data hash      KEYS[2]: the active list
-- KEYS[3]: the signal list         KEYS[4]: the task metadata prefix
-- ARGV: repeating groups of task_id, task_data
-- Returns: the number of jobs added (a task_id already present is left alone).
local added = 0
for i = 1, #ARGV, 2 do
    local task_id = ARGV[i]
    if redis.call("hsetnx", KEYS[1], task_id, ARGV[i + 1]) == 1 then
        redis.call("hset", KEYS[4] .. ":" .. task_id,
            "attempts", 0, "max_attempts", 25, "status", "Pending", "idempotency_key", "")
        redis.call("rpush", KEYS[2], task_id)
        added = added + 1
    end
end
if added > 0 then
    redis.call("del", KEYS[3])
    redis.call("lpush", KEYS[3], 1)
end
return added
