-- entity_system.moon
-- A tiny entity/component/system setup for a 2D game prototype.
-- Entities are bags of named components; systems run over every live
-- entity that has all of the components they require.

import insert, remove, sort, concat from table

unpack = table.unpack or unpack

HUD_TEMPLATE = [[
+------------------------+
| HP   %3d / %3d         |
| Time %6.2fs            |
+------------------------+]]

class Entity
  @next_id: 0

  new: (@tag="entity", components={}) =>
    @@next_id += 1
    @id = @@next_id
    @components = {}
    @alive = true
    @add name, data for name, data in pairs components

  add: (name, data={}) =>
    @components[name] = data
    @

  get: (name) => @components[name]

  has: (...) =>
    for name in *{...}
      return false unless @components[name]
    true

  kill: => @alive = false

  __tostring: => "Entity##{@id}(#{@tag})"


class Player extends Entity
  new: (name, x=0, y=0) =>
    super "player",
      position: { :x, :y }
      velocity: { x: 0, y: 0 }
      health: { current: 100, max: 100 }
      sprite: { glyph: "@" }
      label: { text: name }

  damage: (amount) =>
    hp = @get "health"
    hp.current = math.max 0, hp.current - amount
    @kill! if hp.current == 0
    hp.current


class Enemy extends Entity
  new: (kind, x, y) =>
    stats = switch kind
      when "slime"
        { hp: 20, speed: 1, glyph: "🟢" }
      when "bat"
        { hp: 10, speed: 3, glyph: "🦇" }
      when "ghost", "幽霊"
        { hp: 35, speed: 2, glyph: "👻" }
      else
        { hp: 50, speed: 1, glyph: "?" }
    super kind,
      position: { :x, :y }
      velocity: { x: -stats.speed, y: 0 }
      health: { current: stats.hp, max: stats.hp }
      sprite: { glyph: stats.glyph }


class World
  new: =>
    @entities = {}
    @systems = {}
    @time = 0

  spawn: (entity) =>
    insert @entities, entity
    entity

  system: (name, requires, fn, priority=0) =>
    insert @systems, { :name, :requires, :fn, :priority }
    sort @systems, (a, b) -> a.priority > b.priority
    @

  query: (...) =>
    names = {...}
    [e for e in *@entities when e.alive and e\has unpack names]

  update: (dt=1 / 60) =>
    @time += dt
    for sys in *@systems
      matches = @query unpack sys.requires
      sys.fn e, dt, self for e in *matches
    -- sweep dead entities, walking backwards so removal is safe
    for i = #@entities, 1, -1
      remove @entities, i unless @entities[i].alive

  hud: (player) =>
    hp = player\get "health"
    string.format HUD_TEMPLATE, math.floor(hp.current), hp.max, @time


move = (e, dt) ->
  pos, vel = e\get("position"), e\get("velocity")
  pos.x += vel.x * dt
  pos.y += vel.y * dt

regen = (e, dt) ->
  hp = e\get "health"
  hp.current = math.min hp.max, hp.current + 0.5 * dt

render_ascii = (world, width=20, height=8) ->
  grid = for _ = 1, height
    ["." for _ = 1, width]
  drawable = world\query "position", "sprite"
  for e in *drawable
    pos = e\get "position"
    x, y = math.floor(pos.x) + 1, math.floor(pos.y) + 1
    if x >= 1 and x <= width and y >= 1 and y <= height
      grid[y][x] = e\get("sprite").glyph
  concat [concat(row) for row in *grid], "\n"

default_world = ->
  with World!
    \system "movement", { "position", "velocity" }, move, 10
    \system "regen", { "health" }, regen
    \spawn Player "Aiko", 2, 3
    \spawn Enemy "bat", 10, 4
    \spawn Enemy "幽霊", 15, 6

{ :Entity, :Player, :Enemy, :World, :render_ascii, :default_world }
