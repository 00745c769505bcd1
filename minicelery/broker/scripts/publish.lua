-- Append ARGV[1] to priority list KEYS[1], mark level ARGV[2] in KEYS[3] as non-empty, and
-- make sure the queue's wake list KEYS[2] holds a token.
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
wake(KEYS[2])
return 1
