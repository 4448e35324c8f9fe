-- string_utils.moon
-- Assorted string helpers: trimming, splitting, padding, wrapping,
-- case conversion, escaping and a small string builder.

import concat, insert from table
import rep from string

export trim, split, starts_with, ends_with

local pad

ESCAPES =
  "\n": "\\n"
  "\t": "\\t"
  "\r": "\\r"
  "\\": "\\\\"
  '"':  '\\"'

trim = (s, chars="%s") ->
  s\match "^[#{chars}]*(.-)[#{chars}]*$"

split = (s, sep=",", plain=true) ->
  parts = {}
  start = 1
  while true
    i, j = s\find sep, start, plain
    unless i
      insert parts, s\sub start
      break
    insert parts, s\sub start, i - 1
    start = j + 1
  parts

starts_with = (s, prefix) -> s\sub(1, #prefix) == prefix
ends_with   = (s, suffix) -> suffix == "" or s\sub(-#suffix) == suffix

wrap = (text, width=72, indent="") ->
  lines = {}
  current = indent
  for word in text\gmatch "%S+"
    if #current + #word + 1 > width and current != indent
      insert lines, current
      current = indent .. word
    elseif current == indent
      current ..= word
    else
      current ..= " " .. word
  insert lines, current if current != indent
  concat lines, "\n"

title_case = (s) ->
  result = s\gsub "(%a)([%w']*)", (first, rest) -> first\upper! .. rest\lower!
  result

snake_case = (s) ->
  s = s\gsub "(%l)(%u)", "%1_%2"
  s = s\gsub "[%s%-]+", "_"
  s\lower!

camel_case = (s) ->
  words = split snake_case(s), "_"
  out = { words[1] }
  for w in *words[2,]
    insert out, w\sub(1, 1)\upper! .. w\sub 2
  concat out

escape = (s) -> (s\gsub '[\n\t\r\\"]', ESCAPES)

unescape = (s) ->
  reverse = {v, k for k, v in pairs ESCAPES}
  result = s\gsub '\\[ntr\\"]', reverse
  result

-- Counts code points rather than bytes: "héllo" is 5 and "日本" is 2
utf8_len = (s) -> select 2, s\gsub "[^\128-\191]", ""

join = (sep, ...) ->
  args = {...}
  concat [tostring(v) for v in *args when v != nil], sep


class StringBuilder
  @instances: 0

  new: (@sep="") =>
    @parts = {}
    @@instances += 1

  append: (...) =>
    for i = 1, select "#", ...
      insert @parts, tostring (select i, ...)
    @

  line: (s="") => @append s, "\n"

  build: => concat @parts, @sep


box = (text, padding=1) ->
  lines = split text, "\n"
  width = 0
  for l in *lines
    width = math.max width, utf8_len l
  edge = "+" .. rep("-", width + padding * 2) .. "+"
  sb = with StringBuilder!
    \line edge
    for l in *lines
      \append "|", rep(" ", padding), pad(l, width), rep(" ", padding), "|\n"
    \append edge
  sb\build!

pad = (s, width, align="left", fill=" ") ->
  s = tostring s
  gap = width - utf8_len s
  return s if gap <= 0
  switch align
    when "left"
      s .. rep fill, gap
    when "right"
      rep(fill, gap) .. s
    when "center"
      left = math.floor gap / 2
      rep(fill, left) .. s .. rep(fill, gap - left)
    else
      error "bad alignment '#{align}'"

{
  :trim, :split, :starts_with, :ends_with, :wrap, :title_case
  :snake_case, :camel_case, :escape, :unescape, :utf8_len, :join
  :pad, :box, :StringBuilder
}
