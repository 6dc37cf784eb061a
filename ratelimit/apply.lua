-- Decide a batch of requests for a sliding-window rate limiter (see window.go for the algorithm and
-- proof). Each request is decided as if alone: check all of its counters, then increment all or
-- none. The batch is one script call so that Redis pays its per-command and per-script costs (the
-- call, the TIME below, the reply) once per batch rather than once per request; every request of it
-- is decided at the same time, in order.
-- ARGV[1]: the number of requests. Then per request, in order: its number of counters n, and five
-- values per counter: sub-window ms (g), window ms (W), limit, hits, TTL ms (W+g).
-- KEYS, per request in the same order: its n counters, then the tenant's index (a set of its counter
-- keys, so that a purge needs no key scan). A counter is a hash: sub-window index -> hits, and 't'
-- (the hits of all its sub-windows) and 'o' (its oldest sub-window), so that a decision reads two
-- fields and touches only the sub-windows leaving the window, not all (up to 61) of them.
-- Reply: one string, the requests' answers separated by ',', each "now_ms admitted(1|0) used_1
-- oldest_1 used_2 oldest_2 ..." in decimal integers (cheaper for the client to read than nested
-- arrays); used is before the request's hits, oldest the oldest counted non-empty sub-window or -1.
-- Redis 3.2-4 replicate a script that reads TIME by its effects only when asked; later versions always do.
if redis.replicate_commands then redis.replicate_commands() end

-- rebuild computes t and o of a counter written before they were kept (every field a sub-window),
-- and stores them; a missing key has none: 0, -1.
local function rebuild(key)
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then return 0, -1 end
  local used, oldest = 0, -1
  for j = 1, #fields, 2 do
    local b = tonumber(fields[j])
    used = used + tonumber(fields[j + 1])
    if oldest < 0 or b < oldest then oldest = b end
  end
  redis.call('HSET', key, 't', used, 'o', oldest)
  return used, oldest
end

-- drop removes the sub-windows [oldest, first) that left the window from the counter and its total,
-- and returns the total and the new oldest sub-window (-1: none; the key is then gone). A counter's
-- sub-windows span at most 61 (a decision keeps [first, cur], and the key expires W+g after its
-- newest), so one older than first by more than that means all of them left.
local function drop(key, used, oldest, first, cur)
  if first - oldest > 61 then
    redis.call('DEL', key)
    return 0, -1
  end
  local gone = {}
  for b = oldest, first - 1 do gone[#gone + 1] = b end
  for _, v in ipairs(redis.call('HMGET', key, unpack(gone))) do
    if v then used = used - tonumber(v) end
  end
  redis.call('HDEL', key, unpack(gone))
  if used > 0 then
    -- The new oldest is the first sub-window present from first on, looked up 8 at a time: under
    -- steady traffic, first itself.
    for b = first, cur, 8 do
      local chunk = {}
      for c = b, math.min(b + 7, cur) do chunk[#chunk + 1] = c end
      for j, v in ipairs(redis.call('HMGET', key, unpack(chunk))) do
        if v then
          redis.call('HSET', key, 't', used, 'o', b + j - 1)
          return used, b + j - 1
        end
      end
    end
  end
  -- Nothing left (or a total no sub-window holds, which only a hand-edited hash could have).
  redis.call('DEL', key)
  return 0, -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
-- k: the KEYS before this request's; a: the ARGV index of its counter count.
local k, a = 0, 2
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  local index = KEYS[k + n + 1]
  local reply = {now, 1}
  for i = 1, n do
    local key, p = KEYS[k + i], a + (i - 1) * 5
    local g = tonumber(ARGV[p + 1])
    local first = math.floor((now - tonumber(ARGV[p + 2])) / g)
    local h = redis.call('HMGET', key, 't', 'o')
    local used, oldest = tonumber(h[1]), tonumber(h[2]) or -1
    if not used then used, oldest = rebuild(key) end
    if oldest >= 0 and oldest < first then
      used, oldest = drop(key, used, oldest, first, math.floor(now / g))
    end
    if used + tonumber(ARGV[p + 4]) > tonumber(ARGV[p + 3]) then reply[2] = 0 end
    reply[2 * i + 1] = used
    reply[2 * i + 2] = oldest
  end
  if reply[2] == 1 then
    local indexTTL = 0
    for i = 1, n do
      local key, p = KEYS[k + i], a + (i - 1) * 5
      local hits, cur, oldest = tonumber(ARGV[p + 4]), math.floor(now / tonumber(ARGV[p + 1])), reply[2 * i + 2]
      if hits > 0 then
        local inSub = redis.call('HINCRBY', key, cur, hits)
        redis.call('HINCRBY', key, 't', hits)
        -- (cur < oldest only if Redis's clock stepped back.)
        if oldest < 0 or cur < oldest then redis.call('HSET', key, 'o', cur) end
        -- The TTL (W+g) is set only by the first admission into the current sub-window: that keeps
        -- the key until the sub-window leaves the window (window.go), and later admissions into it
        -- save two calls (this PEXPIRE and the index's PTTL below).
        if inSub == hits then
          redis.call('PEXPIRE', key, ARGV[p + 5])
          -- A counter that already existed is in the index: it was added when created (here, in
          -- the same atomic step), the index outlives it (below), and only a purge removes the
          -- index, in the same DEL as the counters it names. So only a counter that held no
          -- counted sub-window (oldest -1: it does not exist once the others are dropped) is added.
          if oldest < 0 then redis.call('SADD', index, key) end
          indexTTL = math.max(indexTTL, tonumber(ARGV[p + 5]))
        end
      end
    end
    -- The index lives as long as the longest-lived counter it names (a TTL set just now is the latest).
    if indexTTL > 0 and redis.call('PTTL', index) < indexTTL then
      redis.call('PEXPIRE', index, indexTTL)
    end
  end
  -- One format call per answer: converting numbers one by one costs Redis more than the rest of
  -- the script's arithmetic.
  out[r] = string.format(string.rep('%d ', #reply - 1) .. '%d', unpack(reply))
  k = k + n + 1
  a = a + 1 + 5 * n
end
return table.concat(out, ',')
