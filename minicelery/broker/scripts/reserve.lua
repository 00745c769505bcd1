-- Reserve up to ARGV[2] messages for consumer ARGV[1], highest priority first, moving each
-- into the consumer's hold (KEYS[1]) in the same atomic step, so a crash loses nothing.
-- KEYS: hold, seq, consumers, then per queue: 10 priority lists (0..9) and its wake list.
-- Each hold entry is "queue_key \0 wake_key \0 payload" so it can be given back later.
-- ARGV[3...] are tags to acknowledge first, so a busy worker acks and reserves in one trip.
local hold, seq, consumers = KEYS[1], KEYS[2], KEYS[3]
local want = tonumber(ARGV[2])
if #ARGV > 2 then
  redis.call('HDEL', hold, unpack(ARGV, 3))
end
local now = redis.call('TIME')
redis.call('ZADD', consumers, now[1] + now[2] / 1000000, ARGV[1])
local out = {}
local nqueues = (#KEYS - 3) / 11
for qi = 0, nqueues - 1 do
  local base = 3 + qi * 11
  local wake = KEYS[base + 11]
  for prio = 9, 0, -1 do
    if want <= 0 then break end
    local qkey = KEYS[base + 1 + prio]
    local items = redis.call('LPOP', qkey, want)
    if items then
      local last = redis.call('INCRBY', seq, #items)
      for i, item in ipairs(items) do
        local tag = tostring(last - #items + i)
        redis.call('HSET', hold, tag, qkey .. '\0' .. wake .. '\0' .. item)
        out[#out + 1] = tag
        out[#out + 1] = qkey
        out[#out + 1] = item
      end
      want = want - #items
    end
  end
  -- Pass the wake-up token on while work is left, so another idle consumer wakes too.
  local left = 0
  for prio = 0, 9 do
    left = left + redis.call('LLEN', KEYS[base + 1 + prio])
    if left > 0 then break end
  end
  if left == 0 then
    redis.call('DEL', wake)
  elseif redis.call('LLEN', wake) == 0 then
    redis.call('RPUSH', wake, '1')
  end
end
return out
