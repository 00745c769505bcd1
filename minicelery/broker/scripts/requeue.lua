-- Give the held messages ARGV[...] of hold KEYS[1] back to the front of their queues, in
-- their original order (hence pushing the last one first).
local n = 0
for i = #ARGV, 1, -1 do
  local tag = ARGV[i]
  local entry = redis.call('HGET', KEYS[1], tag)
  if entry then
    local a = string.find(entry, '\0', 1, true)
    local b = string.find(entry, '\0', a + 1, true)
    local qkey, wake = string.sub(entry, 1, a - 1), string.sub(entry, a + 1, b - 1)
    redis.call('LPUSH', qkey, string.sub(entry, b + 1))
    if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
    redis.call('HDEL', KEYS[1], tag)
    n = n + 1
  end
end
return n
