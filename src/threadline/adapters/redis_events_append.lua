-- Append frames of one run to its stream, in order, and keep the stream alive; a final frame also marks
-- the run's end, and a finished run's stream is kept `retention` seconds for late readers.
-- Only the run's first frame may create the stream: a stream that vanished mid-run (Redis restarted or
-- flushed) stays gone, so readers rebuild from Postgres instead of following a stream with a hole.
-- KEYS[1]: the run's stream.
-- ARGV: max frames, live TTL in seconds, retention in seconds, '1' if the run finished, then per frame:
--       frame id, frame data, '1' if it is the run's final frame.
-- Returns 1, or 0 when the stream is gone (nothing of this call was appended).
local max_frames, finished = ARGV[1], ARGV[4] == '1'
local ended = false
for i = 5, #ARGV, 3 do
  local id, data = ARGV[i], ARGV[i + 1]
  if id == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', max_frames, '0-1', 'd', data)
  elseif not redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', max_frames, '0-' .. id, 'd', data) then
    return 0
  end
  if ARGV[i + 2] == '1' then
    redis.call('XADD', KEYS[1], '1-0', 'end', '1')
    ended = true
  end
end
if finished then
  -- The end marker, unless a final frame placed it (then this XADD fails, harmlessly); NOMKSTREAM:
  -- finishing a run the log does not have must not create it.
  if not ended then
    redis.pcall('XADD', KEYS[1], 'NOMKSTREAM', '1-0', 'end', '1')
  end
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
