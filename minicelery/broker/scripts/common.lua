-- Shared by the scripts below (prepended when they are loaded).
-- A held or scheduled entry is "list_key \0 wake_key \0 levels_key \0 priority \0 payload":
-- everything needed to put the payload back where it came from.
local function split_entry(entry)
  local parts, start = {}, 1
  for _ = 1, 4 do
    local stop = string.find(entry, '\0', start, true)
    parts[#parts + 1] = string.sub(entry, start, stop - 1)
    start = stop + 1
  end
  parts[5] = string.sub(entry, start)
  return parts
end

-- Make sure an idle worker blocked on the queue's wake list wakes up.
local function wake(wake_key)
  if redis.call('LLEN', wake_key) == 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- Put a payload on its priority list (front or back) and mark the level as non-empty.
local function enqueue(entry, front)
  local p = split_entry(entry)
  redis.call(front and 'LPUSH' or 'RPUSH', p[1], p[5])
  redis.call('SADD', p[3], p[4])
  wake(p[2])
end

-- Give everything hold `hold` has back to the front of its queues, oldest tags last
-- pushed so the queues keep their order, and delete the hold. Returns how many.
local function give_back(hold)
  local entries = redis.call('HGETALL', hold)
  local tags, by_tag = {}, {}
  for i = 1, #entries, 2 do
    local tag = tonumber(entries[i])
    tags[#tags + 1] = tag
    by_tag[tag] = entries[i + 1]
  end
  table.sort(tags, function(a, b) return a > b end)
  for _, tag in ipairs(tags) do
    enqueue(by_tag[tag], true)
  end
  redis.call('DEL', hold)
  return #tags
end
