-- Read the marks ARGV[2..] of hash KEYS[1], first setting the missing ones to ARGV[1], so
-- every reader starts from the same value.
local values = {}
for i = 2, #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1])
  values[#values + 1] = redis.call('HGET', KEYS[1], ARGV[i])
end
return values
