-- Store a task's result record KEYS[1] = ARGV[1] with expiry ARGV[2] seconds (0 = none),
-- unless a SUCCESS is already stored there (ARGV[3] is how "status: SUCCESS" looks right
-- after the opening bytes of a serialized record, whose first field is always status;
-- msgpack's map header takes 1 to 5 bytes): a redelivered task must never turn a stored
-- success into something else. The record is also appended to the task's stream KEYS[2]
-- (kept ARGV[4] seconds, about the last 100 records), which waiting clients read with
-- XREAD BLOCK: each of them sees every record, in order.
local current = redis.call('GET', KEYS[1])
local at = current and string.find(current, ARGV[3], 1, true)
if at and at <= 6 then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', math.floor(tonumber(ARGV[2]) * 1000))
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100', '*', 'r', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
