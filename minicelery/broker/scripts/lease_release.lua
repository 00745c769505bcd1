-- Give up lease KEYS[1] if owner ARGV[1] still holds it (never someone else's).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
