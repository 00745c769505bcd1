-- Record one finished header task of a chord and, when it completes the chord, hand back
-- every part in header order to that task alone.
-- KEYS[1]: hash header index -> encoded part; KEYS[2]: the chord's claim;
-- KEYS[3]: how many parts header tasks added while running (add_to_chord), numbered on
-- from the header's size.
-- ARGV[1]: this task's header index, ARGV[2]: its encoded part, ARGV[3]: header size,
-- ARGV[4]: expiry of both keys in seconds (0 = none), ARGV[5]: this task's id.
-- Parts are keyed by index, so a task that runs twice (redelivered, retried) is counted
-- once. The task that completes the chord claims it (KEYS[2] = its id) and the parts are
-- kept until it settles the chord (deletes them) once the body is sent. Until then the
-- same task asking again (it ran again after its process died, or its worker is ending it
-- as lost) gets the parts again, so the body is not lost with the process that claimed it.
-- Any other task never fires the body: the claim outlives the parts.
-- A header read from a generator is sized by its last task only: ARGV[3] is 0 for the
-- others, and the header's size is kept in the hash (field 'size') for whichever part
-- ends last. Until it is known (0) the chord cannot complete.
local header_size = tonumber(ARGV[3])
local told = header_size > 0
if not told then
  header_size = tonumber(redis.call('HGET', KEYS[1], 'size') or '0')
end
local size = 0
if header_size > 0 then
  size = header_size + tonumber(redis.call('GET', KEYS[3]) or '0')
end
local function all_parts()
  local parts = {}
  for i = 0, size - 1 do
    parts[i + 1] = redis.call('HGET', KEYS[1], tostring(i))
  end
  return parts
end

local claim = redis.call('GET', KEYS[2])
if claim then
  if claim == ARGV[5] and redis.call('EXISTS', KEYS[1]) == 1 then
    return all_parts()
  end
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if told then
  redis.call('HSET', KEYS[1], 'size', header_size)
end
local ttl = math.floor(tonumber(ARGV[4]) * 1000)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if size == 0 or redis.call('HLEN', KEYS[1]) - 1 < size then
  return false
end
local parts = all_parts()
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[5])
end
return parts
