-- Store task result records, and acknowledge the messages they finish, in one call: a
-- worker's main process sends everything it has gathered at once (one reply instead of
-- one per record, and an ack can never land before its result).
-- KEYS: each record's key, stream key and waiting flag, in threes; then the hold to
-- acknowledge in, when ARGV[4] > 0. ARGV: expiry in seconds (0 = none), the success
-- marker, the stream's lifetime in seconds, the number of tags to acknowledge, the expiry
-- of FAILURE records and the failure marker (found as the success marker is), each
-- record's data, the tags.
-- A record is not stored over a SUCCESS already there (ARGV[2] is how "status: SUCCESS"
-- looks right after the opening bytes of a serialized record, whose first field is always
-- status; msgpack's map header takes 1 to 5 bytes): a redelivered task must never turn a
-- stored success into something else. While a client waits on the task (its flag is set
-- before it first reads the record), each record is also appended to its stream (kept
-- ARGV[3] seconds, about the last 100 records), which waiting clients read with XREAD
-- BLOCK: each of them sees every record, in order. No one waiting, no stream: a stream
-- costs Redis about 4 KB and several microseconds. Returns how many records were stored.
local expires, marker, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local acks = tonumber(ARGV[4])
local failure_expires, failure_marker = tonumber(ARGV[5]), ARGV[6]
local records = (#KEYS - (acks > 0 and 1 or 0)) / 3
local stored = 0
local px, failure_px = math.floor(expires * 1000), math.floor(failure_expires * 1000)
for i = 1, records do
  local key, stream, waiting, data = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[6 + i]
  local current = redis.call('GET', key)
  local at = current and string.find(current, marker, 1, true)
  if not (at and at <= 6) then
    local ttl = px
    if failure_px ~= px then
      local failed = string.find(data, failure_marker, 1, true)
      ttl = (failed and failed <= 6) and failure_px or px
    end
    if ttl > 0 then
      redis.call('SET', key, data, 'PX', ttl)
    else
      redis.call('SET', key, data)
    end
    if redis.call('EXISTS', waiting) == 1 then
      redis.call('XADD', stream, 'MAXLEN', '~', '100', '*', 'r', data)
      redis.call('EXPIRE', stream, keep)
    end
    stored = stored + 1
  end
end
local first = 7 + records
while first <= #ARGV do
  local last = math.min(first + 999, #ARGV)
  redis.call('HDEL', KEYS[#KEYS], unpack(ARGV, first, last))
  first = last + 1
end
return stored
