-- Flag a task as waited on, and make sure its stream ends with its current record, in one
-- call that a blocking XREAD of the stream follows in the same round trip: the read then
-- returns at once when the record is already there, or blocks until the worker appends the
-- next one (the store script streams records only while the flag is set).
-- KEYS: the record, its stream, the waiting flag. ARGV: the flag's lifetime in
-- milliseconds, the stream's lifetime in seconds.
-- A record stored before the flag was set (or while an earlier waiter's flag had lapsed)
-- was never streamed: it is appended now, unless the stream's last entry is that record.
-- No record yet: the stream is made now, while the task runs, with an entry that holds no
-- record at the fixed id 0-1 (waiters read after it), so the worker's store appends to a
-- stream that exists: making one costs several times an append, on the result's way.
redis.call('SET', KEYS[3], 1, 'PX', ARGV[1])
local data = redis.call('GET', KEYS[1])
if data then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last == 0 or last[1][2][2] ~= data then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100', '*', 'r', data)
    redis.call('EXPIRE', KEYS[2], ARGV[2])
  end
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XADD', KEYS[2], '0-1', 'w', '')
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1
