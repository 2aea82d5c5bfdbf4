-- Append one frame to a run's stream and keep the stream alive; the run's final frame also marks its end.
-- Only the run's first frame may create the stream: a stream that vanished mid-run (Redis restarted or
-- flushed) stays gone, so readers rebuild from Postgres instead of following a stream with a hole.
-- KEYS[1]: the run's stream. ARGV: frame id, frame data, max frames, live TTL in seconds, '1' if final.
if ARGV[1] == '1' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-1', 'd', ARGV[2])
elseif not redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[3], '0-' .. ARGV[1], 'd', ARGV[2]) then
  return 0
end
if ARGV[5] == '1' then
  redis.call('XADD', KEYS[1], '1-0', 'end', '1')
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
