-- Requeue every message held by consumers silent for more than ARGV[1] seconds, then forget
-- those consumers. Atomic, so whichever live worker runs it first requeues them exactly once.
-- KEYS[1]: consumers zset; ARGV[2], ARGV[3]: what comes before and after a consumer's id in
-- its hold key (ARGV[2] empty: return the lost consumers only); ARGV[4]: a consumer to drop at once (clean shutdown) or ''.
-- KEYS[2], KEYS[3]: when a recovery last ran, and when Redis was last heard from again
-- after a silence longer than ARGV[1]. After such a silence (Redis frozen or down, or
-- every worker gone) every heartbeat is old, live workers' too: nobody is judged lost
-- until ARGV[1] seconds after that, so the live ones have time to heartbeat again.
local now = redis.call('TIME')
local clock = now[1] + now[2] / 1000000
local lost_after = tonumber(ARGV[1])
local cutoff = clock - lost_after
local lost = {}
if ARGV[4] == '' then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('SET', KEYS[2], clock)
  if last < cutoff then redis.call('SET', KEYS[3], clock) end
  if tonumber(redis.call('GET', KEYS[3]) or '0') <= cutoff then
    lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  end
else
  lost[1] = ARGV[4]
end
if ARGV[2] == '' then
  return lost  -- on a cluster: the caller gives back their holds, one queue at a time
end
local n = 0
for _, consumer in ipairs(lost) do
  n = n + give_back(ARGV[2] .. consumer .. ARGV[3])
  redis.call('ZREM', KEYS[1], consumer)
end
return n
