-- Record one finished header task of a chord and, when it completes the chord, hand back
-- every part in header order, exactly once.
-- KEYS[1]: hash header index -> encoded part; KEYS[2]: the marker of a chord already done.
-- ARGV[1]: this task's header index, ARGV[2]: its encoded part, ARGV[3]: header size,
-- ARGV[4]: expiry of both keys in seconds (0 = none).
-- Parts are keyed by index, so a task that runs twice (redelivered, retried) is counted
-- once; the done marker outlives the parts, so nothing fires the body a second time.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local size = tonumber(ARGV[3])
local ttl = math.floor(tonumber(ARGV[4]) * 1000)
if redis.call('HLEN', KEYS[1]) < size then
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return false
end
local parts = {}
for i = 0, size - 1 do
  parts[i + 1] = redis.call('HGET', KEYS[1], tostring(i))
end
if ttl > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ttl)
else
  redis.call('SET', KEYS[2], '1')
end
redis.call('DEL', KEYS[1])
return parts
