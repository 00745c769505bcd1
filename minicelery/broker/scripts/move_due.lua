-- Move scheduled messages (KEYS[1], score = due time) due by ARGV[1] onto their queues, at
-- most ARGV[2] of them. Atomic: with several workers each message is moved exactly once.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  local a = string.find(entry, '\0', 1, true)
  local b = string.find(entry, '\0', a + 1, true)
  local qkey, wake = string.sub(entry, 1, a - 1), string.sub(entry, a + 1, b - 1)
  redis.call('RPUSH', qkey, string.sub(entry, b + 1))
  if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
  redis.call('ZREM', KEYS[1], entry)
end
return #due
