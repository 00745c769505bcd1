-- The results a worker's main process has gathered, and the acknowledgements that follow
-- them, in one call: one reply instead of one per record, and the acks can never land
-- before the results they follow.
-- KEYS: each record's key and stream key, in pairs; then the hold to acknowledge in, when
-- ARGV[4] > 0. ARGV: expiry in seconds (0 = none), the success marker, the stream's
-- lifetime in seconds, the number of tags to acknowledge, each record's data, the tags.
-- Each record is stored as store_result.lua stores one (a stored SUCCESS is never replaced).
local expires, marker, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local acks = tonumber(ARGV[4])
local records = (#KEYS - (acks > 0 and 1 or 0)) / 2
local stored = 0
for i = 1, records do
  local key, stream, data = KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 + i]
  local current = redis.call('GET', key)
  local at = current and string.find(current, marker, 1, true)
  if not (at and at <= 6) then
    if expires > 0 then
      redis.call('SET', key, data, 'PX', math.floor(expires * 1000))
    else
      redis.call('SET', key, data)
    end
    redis.call('XADD', stream, 'MAXLEN', '~', '100', '*', 'r', data)
    redis.call('EXPIRE', stream, keep)
    stored = stored + 1
  end
end
local first = 5 + records
while first <= #ARGV do
  local last = math.min(first + 999, #ARGV)
  redis.call('HDEL', KEYS[#KEYS], unpack(ARGV, first, last))
  first = last + 1
end
return stored
