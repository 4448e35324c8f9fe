-- template.moon
-- A tiny templating helper. Supports {{ variable }} substitution with
-- dotted paths, simple filters ({{ name | upper }}) and
-- {% each list as item %} ... {% end %} blocks.

import concat from table

export Template

local render_string

html_escapes =
	["&"]: "&amp;"
	["<"]: "&lt;"
	[">"]: "&gt;"
	['"']: "&quot;"
	["'"]: "&#39;"

escape_html = (text) ->
	(tostring(text)\gsub "[&<>\"']", html_escapes)

-- Escapes a value so it can be embedded in a JavaScript string literal
js_escape = (text) ->
	out = tostring(text)\gsub("\\", "\\\\")\gsub("\n", "\\n")\gsub('"', '\\"')
	out

lookup = (context, path) ->
	value = context
	for key in path\gmatch "[^%.]+"
		return nil unless type(value) == "table"
		value = value[tonumber(key) or key]
	value

apply_filter = (value, filter, arg) ->
	switch filter
		when "upper"
			tostring(value)\upper!
		when "lower"
			tostring(value)\lower!
		when "escape", "e"
			escape_html value
		when "js"
			js_escape value
		when "default"
			if value == nil then arg else value
		when "join"
			concat [tostring(v) for v in *value], arg or ", "
		else
			error "unknown filter: #{filter}"

render_string = (source, context={}) ->
	expand_each = (list_name, var, inner) ->
		list = lookup(context, list_name) or {}
		parts = for item in *list
			scope = {k, v for k, v in pairs context}
			scope[var] = item
			render_string inner, scope
		concat parts

	substitute = (expr) ->
		path, filter, arg = expr\match "^([%w_.]+)%s*|%s*([%w_]+):?(.*)$"
		path = expr unless path
		arg = nil if arg == ""
		value = lookup context, path
		value = apply_filter value, filter, arg if filter
		if value == nil then "" else tostring value

	each_pattern = "{%%%s*each%s+([%w_.]+)%s+as%s+([%w_]+)%s*%%}(.-){%%%s*end%s*%%}"
	source = source\gsub each_pattern, expand_each
	result = source\gsub "{{%s*(.-)%s*}}", substitute
	result


class Template
	@cache: {}

	@compile: (source, name) =>
		cached = @cache[source]
		return cached if cached
		tpl = Template source, name
		@cache[source] = tpl
		tpl

	new: (@source, @name="<inline>") =>
		@renders = 0

	-- Later context tables override earlier ones
	render: (context, ...) =>
		@renders += 1
		merged = {k, v for k, v in pairs context or {}}
		for extra in *{...}
			merged[k] = v for k, v in pairs extra
		render_string @source, merged

	__tostring: => "Template(#{@name}, #{#@source} chars)"


welcome_email = Template [[
Hello {{ user.name | default:friend }},

Your order #{{ order.id }} contains:
{% each order.items as item %}  - {{ item | escape }}
{% end %}
Thanks for shopping with us!
]], "welcome_email"

preview = ->
	print welcome_email\render {
		user: { name: "Grace" }
		order: { id: 1042, items: { "Tea <loose leaf>", "Mug" } }
	}

{ :Template, render: render_string, :escape_html, :js_escape, :welcome_email, :preview }
