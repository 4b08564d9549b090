-- Forgets completed jobs beyond the newest-kept count, at most ARGV[2] per call.
--
-- apalis-redis keeps every completed job's payload and metadata forever; request-log
-- batches are large, so Redis would grow without bound. Which done jobs are forgotten is
-- arbitrary (a set has no order); the count kept is what bounds memory.
--
-- KEYS[1]: the done set   KEYS[2]: the task data hash   KEYS[3]: the task metadata prefix
-- ARGV[1]: how many done jobs to keep   ARGV[2]: most jobs to forget in this call
-- Returns: the number of jobs forgotten.
local excess = redis.call("scard", KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then
    return 0
end
local ids = redis.call("spop", KEYS[1], math.min(excess, tonumber(ARGV[2])))
for _, id in ipairs(ids) do
    redis.call("hdel", KEYS[2], id)
    redis.call("del", KEYS[3] .. ":" .. id)
end
return #ids
