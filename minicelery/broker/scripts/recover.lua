-- Requeue every message held by consumers silent for more than ARGV[1] seconds, then forget
-- those consumers. Atomic, so whichever live worker runs it first requeues them exactly once.
-- KEYS[1]: consumers zset; ARGV[2]: prefix of hold keys; ARGV[3]: a consumer to drop at once
-- (clean shutdown) or ''.
local now = redis.call('TIME')
local cutoff = now[1] + now[2] / 1000000 - tonumber(ARGV[1])
local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if ARGV[3] ~= '' then lost[#lost + 1] = ARGV[3] end
local n = 0
for _, consumer in ipairs(lost) do
  local hold = ARGV[2] .. consumer
  local entries = redis.call('HGETALL', hold)
  for i = #entries, 2, -2 do
    local entry = entries[i]
    local a = string.find(entry, '\0', 1, true)
    local b = string.find(entry, '\0', a + 1, true)
    local qkey, wake = string.sub(entry, 1, a - 1), string.sub(entry, a + 1, b - 1)
    redis.call('LPUSH', qkey, string.sub(entry, b + 1))
    if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
    n = n + 1
  end
  redis.call('DEL', hold)
  redis.call('ZREM', KEYS[1], consumer)
end
return n
