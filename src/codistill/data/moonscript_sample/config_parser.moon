-- config_parser.moon
-- Parses INI-style configuration text into nested tables, e.g.:
--   [server]
--   host = 0.0.0.0
--   port = 8080      ; trailing comments are allowed
-- Values are coerced to booleans, numbers or strings, and quoted
-- strings understand the usual escapes (\n, \t, \\ and \").

import match, gsub, format from string
import concat, insert, sort from table

export ConfigError, ConfigParser

local coerce

DEFAULTS =
	server:
		host: "127.0.0.1"
		port: 8080
	logging:
		level: "info"
		file: "app.log"

unescape_map = { n: "\n", t: "\t", r: "\r", ["\\"]: "\\", ['"']: '"' }

trim = (s) -> match s, "^%s*(.-)%s*$"

unquote = (raw) ->
	inner = match raw, '^"(.*)"$'
	return raw unless inner
	result = gsub inner, "\\(.)", (c) -> unescape_map[c] or c
	result


class ConfigError
	new: (@message, @line_no) =>

	__tostring: => "config error on line #{@line_no}: #{@message}"


class ConfigParser
	@comment_chars: { ";", "#" }

	new: (defaults=DEFAULTS) =>
		@data = {}
		@errors = {}
		@merge defaults

	merge: (tbl) =>
		for section, values in pairs tbl
			@data[section] = @data[section] or {}
			@data[section][k] = v for k, v in pairs values
		@

	is_comment: (line) =>
		first = line\sub 1, 1
		for c in *@@comment_chars
			return true if first == c
		false

	parse: (text, source="<string>") =>
		section = "default"
		line_no = 0
		for raw in (text .. "\n")\gmatch "(.-)\r?\n"
			line_no += 1
			line = trim raw
			unless line == "" or @is_comment line
				name = match line, "^%[([%w_%.%-]+)%]$"
				if name
					section = name
					@data[section] = @data[section] or {}
				else
					key, value = match line, "^([%w_%.%-]+)%s*=%s*(.*)$"
					if key
						value = trim gsub(value, "%s+[;#].*$", "") unless match value, '^"'
						@data[section] = @data[section] or {}
						@data[section][key] = coerce value
					else
						insert @errors, ConfigError "cannot parse '#{line}' in #{source}", line_no
		#@errors == 0

	get: (path, fallback) =>
		section, key = match path, "^([^.]+)%.(.+)$"
		unless section
			section, key = "default", path
		value = @data[section] and @data[section][key]
		if value == nil then fallback else value

	section_names: =>
		names = [name for name in pairs @data]
		sort names
		names

	serialize: =>
		out = {}
		for name in *@section_names!
			insert out, "[#{name}]"
			keys = [k for k in pairs @data[name]]
			sort keys
			for k in *keys
				insert out, format "%s = %s", k, tostring @data[name][k]
			insert out, ""
		concat out, "\n"


coerce = (raw) ->
	value = trim raw
	switch value\lower!
		when "true", "yes", "on"
			true
		when "false", "no", "off"
			false
		when "", "nil", "null"
			nil
		else
			tonumber(value) or unquote value


SAMPLE = [[
; example configuration
[server]
host = 0.0.0.0
port = 9090   ; override the default

[logging]
level = debug
format = "[%s]\t%s"
]]

parse_config = (text=SAMPLE, ...) ->
	parser = ConfigParser ...
	ok = parser\parse text
	unless ok
		for err in *parser.errors
			io.stderr\write tostring(err), "\n"
	parser, ok

{ :ConfigParser, :ConfigError, :parse_config, :coerce, :SAMPLE }
