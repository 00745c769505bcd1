-- Reserve up to ARGV[2] messages for consumer ARGV[1], highest priority first, moving each
-- into the consumer's hold (KEYS[1]) in the same atomic step, so a crash loses nothing.
-- KEYS: hold, seq, consumers (heartbeats), then per queue 12 keys: its 10 priority lists
-- (0..9), the set of its non-empty levels, and its wake list. ARGV[3] is 1 when this
-- reserve is to count as the consumer's heartbeat; ARGV[4...] are tags to acknowledge
-- first, so a busy worker acknowledges and reserves in one round trip.
local hold, seq = KEYS[1], KEYS[2]
local want = tonumber(ARGV[2])
if #ARGV > 3 then
  redis.call('HDEL', hold, unpack(ARGV, 4))
end
-- A reserve counts as a heartbeat (at least once a second, and always the first): a
-- consumer that holds messages is always known, so they can be recovered if it dies.
if ARGV[3] == '1' then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[3], now[1] + now[2] / 1000000, ARGV[1])
end
local taken = {}  -- list_key, entry prefix, payload, ...

local function levels_of(base, levels_key)
  local levels = redis.call('SMEMBERS', levels_key)
  -- Nothing marked: look at every list once (messages pushed by hand, or by an older
  -- version), and mark what is there. One EXISTS answers for all ten lists in the usual
  -- case, an empty queue (an idle consumer's every reserve).
  if #levels == 0 and redis.call('EXISTS', unpack(KEYS, base + 1, base + 10)) > 0 then
    for prio = 0, 9 do
      if redis.call('LLEN', KEYS[base + 1 + prio]) > 0 then
        redis.call('SADD', levels_key, prio)
        levels[#levels + 1] = tostring(prio)
      end
    end
  end
  if #levels > 1 then
    table.sort(levels, function(a, b) return tonumber(a) > tonumber(b) end)
  end
  return levels
end

for base = 3, #KEYS - 1, 12 do
  local levels_key, wake_key = KEYS[base + 11], KEYS[base + 12]
  if want > 0 then
    local levels = levels_of(base, levels_key)
    local left = #levels  -- levels still marked
    for _, level in ipairs(levels) do
      local list_key = KEYS[base + 1 + tonumber(level)]
      local asked = want
      local items = want > 0 and redis.call('LPOP', list_key, want)
      if items then
        local prefix = list_key .. '\0' .. wake_key .. '\0' .. levels_key .. '\0' .. level .. '\0'
        for _, item in ipairs(items) do
          taken[#taken + 1] = list_key
          taken[#taken + 1] = prefix
          taken[#taken + 1] = item
        end
        want = want - #items
      end
      -- Fewer than asked (or none): the list is empty now, no need to ask Redis.
      local drained = asked > 0 and (not items or #items < asked)
      if drained or redis.call('LLEN', list_key) == 0 then
        redis.call('SREM', levels_key, level)
        left = left - 1
      end
    end
    -- Pass the wake-up token on while work is left, so another idle consumer wakes too.
    if left == 0 then
      redis.call('DEL', wake_key)
    else
      wake(wake_key)
    end
  end
end

local out = {}
if #taken > 0 then
  local count = #taken / 3
  local first = redis.call('INCRBY', seq, count) - count
  local fields = {}
  for i = 1, count do
    local tag = tostring(first + i)
    fields[#fields + 1] = tag
    fields[#fields + 1] = taken[3 * i - 1] .. taken[3 * i]
    out[#out + 1] = tag
    out[#out + 1] = taken[3 * i - 2]
    out[#out + 1] = taken[3 * i]
  end
  redis.call('HSET', hold, unpack(fields))
end
return out
