-- Give held message ARGV[1] of hold KEYS[1] back to the front of its queue as payload
-- ARGV[2] (the same message, marked as redelivered) instead of the bytes it was delivered
-- with. Returns 1, or 0 when the hold no longer has it (acknowledged or recovered already).
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then
  return 0
end
local p = split_entry(entry)
redis.call('LPUSH', p[1], ARGV[2])
redis.call('SADD', p[3], p[4])
wake(p[2])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
