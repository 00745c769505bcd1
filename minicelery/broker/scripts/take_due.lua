-- On a cluster, where a scheduled message's queue lives in another slot: take the messages
-- of scheduled set KEYS[1] due by ARGV[1] (at most ARGV[2]) into hash KEYS[2] (entry -> when
-- taken), for the caller to queue and then delete from it. Entries another mover took more
-- than ARGV[3] seconds ago and never finished (it died) are taken again: a message may be
-- queued twice after a crash, never lost. Returns the entries to queue.
local now = redis.call('TIME')
local clock = now[1] + now[2] / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[1], entry)
  redis.call('HSET', KEYS[2], entry, clock)
end
local stale = clock - tonumber(ARGV[3])
local moving = redis.call('HGETALL', KEYS[2])
for i = 1, #moving, 2 do
  if tonumber(moving[i + 1]) < stale then
    redis.call('HSET', KEYS[2], moving[i], clock)
    due[#due + 1] = moving[i]
  end
end
return due
