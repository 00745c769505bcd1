-- Append ARGV[1] to queue list KEYS[1] and make sure its wake list KEYS[2] holds a token.
redis.call('RPUSH', KEYS[1], ARGV[1])
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('RPUSH', KEYS[2], '1')
end
return 1
