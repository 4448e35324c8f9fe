-- rate_limiter.moon
-- Token bucket and sliding-window rate limiters. The clock function is
-- injected so that the limiters can be tested deterministically.

import insert, remove from table
import floor, min from math

PRESETS =
  api:      { capacity: 100, refill_rate: 10 }   -- bursty public API
  login:    { capacity: 5,   refill_rate: 0.1 }  -- slow down brute force
  webhook:  { capacity: 20,  refill_rate: 2 }

class RateLimiter
  @registry: {}

  new: (@name="default", @clock=os.clock) =>
    @@registry[@name] = @
    @allowed = 0
    @rejected = 0

  check: (key="global", cost=1) =>
    ok = @try_acquire key, cost
    if ok
      @allowed += 1
    else
      @rejected += 1
    ok

  try_acquire: => error "#{@@__name} must implement try_acquire"

  stats: =>
    total = @allowed + @rejected
    ratio = if total > 0 then @rejected / total else 0
    {
      name: @name
      allowed: @allowed
      rejected: @rejected
      reject_ratio: floor(ratio * 1000) / 1000
    }


class TokenBucket extends RateLimiter
  new: (opts={}) =>
    super opts.name, opts.clock
    @capacity = opts.capacity or 10
    @refill_rate = opts.refill_rate or 1  -- tokens per second
    @buckets = {}

  bucket_for: (key) =>
    bucket = @buckets[key]
    unless bucket
      bucket = { tokens: @capacity, updated: @clock! }
      @buckets[key] = bucket
    bucket

  refill: (bucket) =>
    now = @clock!
    elapsed = now - bucket.updated
    if elapsed > 0
      bucket.tokens = min @capacity, bucket.tokens + elapsed * @refill_rate
      bucket.updated = now

  try_acquire: (key, cost) =>
    bucket = @bucket_for key
    @refill bucket
    if bucket.tokens >= cost
      bucket.tokens -= cost
      true
    else
      false

  -- Seconds until `cost` tokens will be available for key
  wait_time: (key, cost=1) =>
    bucket = @bucket_for key
    @refill bucket
    missing = cost - bucket.tokens
    if missing <= 0 then 0 else missing / @refill_rate


class SlidingWindow extends RateLimiter
  new: (@limit=60, @window=60, ...) =>
    super ...
    @hits = {}

  prune: (list, now) =>
    while #list > 0 and now - list[1] >= @window
      remove list, 1

  try_acquire: (key, cost) =>
    now = @clock!
    @hits[key] = @hits[key] or {}
    list = @hits[key]
    @prune list, now
    return false if #list + cost > @limit
    insert list, now for _ = 1, cost
    true

  remaining: (key) =>
    list = @hits[key] or {}
    @prune list, @clock!
    @limit - #list


create = (kind, ...) ->
  switch kind
    when "bucket", "token_bucket"
      TokenBucket ...
    when "window", "sliding"
      SlidingWindow ...
    else
      error "unknown limiter kind: #{kind}"

-- A controllable clock for tests: returns (clock, advance)
fake_clock = (start=0) ->
  now = start
  clock = -> now
  advance = (dt=1) -> now += dt
  clock, advance

summary = ->
  {name, limiter\stats! for name, limiter in pairs RateLimiter.registry}

format_summary = ->
  lines = for name, s in pairs summary!
    "#{name}\tallowed=#{s.allowed}\trejected=#{s.rejected}"
  table.concat lines, "\n"

{ :RateLimiter, :TokenBucket, :SlidingWindow, :PRESETS, :create, :fake_clock, :summary, :format_summary }
