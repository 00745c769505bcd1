-- Hold lease KEYS[1] for owner ARGV[1] for ARGV[2] ms: take it when free, extend it when
-- ARGV[1] already holds it. Returns {1, ms left} when held, {0, ms until it expires} when not.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
