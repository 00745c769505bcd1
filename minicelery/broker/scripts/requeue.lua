-- Give the held messages ARGV[...] of hold KEYS[1] back to the front of their queues, in
-- their original order (hence pushing the last one first).
local n = 0
for i = #ARGV, 1, -1 do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    enqueue(entry, true)
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
