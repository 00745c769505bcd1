-- Publish a message only if its run is still unclaimed, and claim it in the same step:
-- lease KEYS[1] must be held by ARGV[1] (when ARGV[1] is not empty) and mark ARGV[2] of
-- hash KEYS[2] must still be ARGV[3]; then the mark becomes ARGV[4], its count in KEYS[3]
-- grows by one, and entry ARGV[5] is queued now, or in scheduled set KEYS[4] (waking
-- KEYS[5]) at ARGV[6] when given. Returns 1 if published, 0 if someone else did.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
if ARGV[5] == '' then
  return 1  -- claimed only (on a cluster the caller publishes: the queue is in another slot)
elseif ARGV[6] == '' then
  enqueue(ARGV[5], false)
else
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], 0, 0)
end
return 1
