-- Keeps no payload of a completed job, and a bounded trace of them.
--
-- apalis-redis keeps every completed job's payload and metadata forever; request-log
-- batches are large (62 MB after 300,000 requests at 250 events a batch), so Redis would
-- grow without bound. Here every completed job loses its payload, and only the newest-kept
-- count of traces stays: the id in the done set and apalis's metadata hash (status,
-- attempts, done_at and the handler's result, which for iptrack's jobs is empty), about
-- 200 bytes each whatever the batch size. Which traces are forgotten is arbitrary (a set
-- has no order); the count kept bounds memory because a trace's size does not depend on
-- the job's payload.
--
-- KEYS[1]: the done set   KEYS[2]: the task data hash   KEYS[3]: the task metadata prefix
-- ARGV[1]: how many traces to keep   ARGV[2]: most traces to forget in this call
-- Returns: {traces forgotten, payloads dropped}.
local forgotten = 0
local excess = redis.call("scard", KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then
    local ids = redis.call("spop", KEYS[1], math.min(excess, tonumber(ARGV[2])))
    for _, id in ipairs(ids) do
        redis.call("hdel", KEYS[2], id)
        redis.call("del", KEYS[3] .. ":" .. id)
    end
    forgotten = #ids
end
-- The done set now holds at most the kept count plus one interval's completions, so
-- this walk is bounded too; HDEL of a payload already dropped costs a lookup.
local dropped = 0
for _, id in ipairs(redis.call("smembers", KEYS[1])) do
    dropped = dropped + redis.call("hdel", KEYS[2], id)
end
return {forgotten, dropped}
