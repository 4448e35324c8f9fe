-- router.moon
-- A minimal HTTP-style router: path patterns with :params and a
-- trailing * splat, per-method routes, middleware chains, named
-- routes for URL building and a 404 fallback.

import insert, concat from table

METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE" }

-- Turns "/users/:id/files/*" into a Lua pattern plus capture names
compile_pattern = (path) ->
  names = {}
  pattern = path\gsub "[%-%.%+%?]", "%%%0"
  pattern = pattern\gsub ":([%w_]+)", (name) ->
    insert names, name
    "([^/]+)"
  if pattern\sub(-1) == "*"
    insert names, "splat"
    pattern = pattern\sub(1, -2) .. "(.*)"
  "^#{pattern}$", names


class Route
  new: (@method, @path, @handler, @name) =>
    @pattern, @param_names = compile_pattern @path

  match: (method, path) =>
    return nil unless method == @method or @method == "ANY"
    captures = { path\match @pattern }
    return nil if #captures == 0 and not path\match @pattern
    params = {}
    for i, name in ipairs @param_names
      params[name] = captures[i]
    params


class Router
  new: =>
    @routes = {}
    @named = {}
    @middleware = {}
    @not_found = (req) -> { status: 404, body: "Not found: #{req.path}" }

  add: (method, path, handler, name) =>
    route = Route method\upper!, path, handler, name
    insert @routes, route
    @named[name] = route if name
    @

  use: (...) =>
    for fn in *{...}
      insert @middleware, fn
    @

  dispatch: (method, path, ...) =>
    req = { :method, :path, params: {}, extra: {...} }
    local handler
    for route in *@routes
      params = route\match method, path
      if params
        req.params = params
        req.route = route
        handler = route.handler
        break
    handler = @not_found unless handler
    run = (i) ->
      mw = @middleware[i]
      if mw
        mw req, -> run i + 1
      else
        handler req
    run 1

  url_for: (name, params={}) =>
    route = @named[name]
    error "no route named '#{name}'" unless route
    fill = (key) ->
      value = params[key]
      error "missing param '#{key}' for #{name}" if value == nil
      tostring value
    url = route.path\gsub ":([%w_]+)", fill
    url

  describe: =>
    lines = [string.format("%-6s %s", r.method, r.path) for r in *@routes]
    concat lines, "\n"


-- router\get "/path", handler and friends, one per HTTP method
for method in *METHODS
  Router.__base[method\lower!] = (path, handler, name) =>
    @add method, path, handler, name


status_text = (code) ->
  switch code
    when 200 then "OK"
    when 201 then "Created"
    when 301, 302 then "Redirect"
    when 404 then "Not Found"
    else
      if code >= 500 then "Server Error" else "Unknown"

logger = (req, next) ->
  print "--> #{req.method} #{req.path}"
  res = next!
  print "<-- #{res.status} #{status_text res.status}"
  res

example = ->
  app = with Router!
    \use logger
    \get "/", (-> { status: 200, body: "home" }), "home"
    \get "/users/:id", ((req) -> { status: 200, body: "user #{req.params.id}" }), "user"
    \post "/users", (req) -> { status: 201, body: "created" }
    \get "/static/*", (req) -> { status: 200, body: "file: #{req.params.splat}" }
  app\dispatch "GET", "/users/42"
  app\dispatch "GET", "/static/css/site.css"
  app\dispatch "DELETE", "/nothing/here"
  print app\url_for "user", id: 7
  app

{ :Router, :Route, :compile_pattern, :status_text, :logger, :example }
