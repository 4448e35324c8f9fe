-- event_emitter.moon
-- A Node-style event emitter with once-listeners, a "*" wildcard and
-- a per-class cap on listeners to catch accidental leaks early.

import insert, remove, concat from table

export EventEmitter

EVENTS =
  start:    "app:start"
  stop:     "app:stop"
  failure:  "app:failure"
  reload:   "app:reload"

class EventEmitter
  @default_max_listeners: 10
  @instances: 0

  new: (opts={}) =>
    @listeners = {}
    @max_listeners = opts.max_listeners or @@default_max_listeners
    @@instances += 1

  listener_count: (event) =>
    list = @listeners[event]
    if list then #list else 0

  on: (event, fn, once=false) =>
    assert type(fn) == "function", "listener must be a function"
    @listeners[event] = @listeners[event] or {}
    list = @listeners[event]
    if #list >= @max_listeners
      io.stderr\write "warning: #{#list + 1} listeners for '#{event}'\n"
    insert list, { :fn, :once }
    @

  once: (event, fn) => @on event, fn, true

  off: (event, fn) =>
    unless fn
      @listeners[event] = nil
      return @
    list = @listeners[event] or {}
    i = #list
    while i > 0
      remove list, i if list[i].fn == fn
      i -= 1
    @

  -- Listeners registered on "*" receive the event name first   
  emit: (event, ...) =>
    handled = false
    for name in *{ event, "*" }
      list = @listeners[name]
      if list
        -- copy first so listeners can remove themselves while we iterate
        snapshot = [entry for entry in *list]
        for entry in *snapshot
          if name == "*"
            entry.fn event, ...
          else
            entry.fn ...
          @off name, entry.fn if entry.once
          handled = true
    handled


class TypedEmitter extends EventEmitter
  new: (@allowed, opts) =>
    super opts
    @allowed_set = {name, true for name in *@allowed}

  check: (event) =>
    unless @allowed_set[event] or event == "*"
      error "unknown event '#{event}', expected one of: #{concat @allowed, ", "}"

  on: (event, ...) =>
    @check event
    super event, ...

  emit: (event, ...) =>
    @check event
    super event, ...


-- Collects every payload for an event into a list; handy in tests
recorder = (emitter, event) ->
  calls = {}
  emitter\on event, (...) ->
    insert calls, { n: select("#", ...), ... }
  calls

describe_call = (call) ->
  parts = [tostring(call[i]) for i = 1, call.n]
  "(" .. concat(parts, ",\t") .. ")"

demo = ->
  names = [name for _, name in pairs EVENTS when name != EVENTS.failure]
  bus = TypedEmitter names, max_listeners: 3
  with bus
    \on EVENTS.start, (user) -> print "welcome back, #{user}!"
    \once EVENTS.stop, (user) -> print "bye #{user}\n"
    \on "*", (event, ...) -> print "[trace]\t#{event}", ...
  log = recorder bus, EVENTS.reload
  bus\emit EVENTS.start, "ada"
  bus\emit EVENTS.stop, "ada"
  bus\emit EVENTS.stop, "ada"   -- silent: the once-listener is gone
  bus\emit EVENTS.reload, "config.ini", true
  print describe_call(call) for call in *log
  bus

{ :EventEmitter, :TypedEmitter, :EVENTS, :recorder, :demo }
