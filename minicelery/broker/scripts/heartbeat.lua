-- Record consumer ARGV[1] as alive now (the server's clock, so workers need not agree).
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1] + now[2] / 1000000, ARGV[1])
return 1
