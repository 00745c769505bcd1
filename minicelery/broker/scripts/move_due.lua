-- Move scheduled messages (KEYS[1], score = due time) due by ARGV[1] onto their queues, at
-- most ARGV[2] of them. Atomic: with several workers each message is moved exactly once.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  enqueue(entry, false)
  redis.call('ZREM', KEYS[1], entry)
end
return #due
