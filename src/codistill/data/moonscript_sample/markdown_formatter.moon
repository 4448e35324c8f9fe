-- markdown_formatter.moon
-- Converts a small, forgiving subset of Markdown to HTML: headings,
-- emphasis, inline code, links, bullet and numbered lists, code fences
-- and paragraphs. It is deliberately not a full CommonMark parser.

import concat, insert from table

export markdown

escape = (text) ->
  text = text\gsub "&", "&amp;"
  text = text\gsub "<", "&lt;"
  text = text\gsub ">", "&gt;"
  text

inline = (text) ->
  text = escape text
  text = text\gsub "`([^`]+)`", "<code>%1</code>"
  text = text\gsub "%*%*(.-)%*%*", "<strong>%1</strong>"
  text = text\gsub "%*(.-)%*", "<em>%1</em>"
  text = text\gsub "%[(.-)%]%((.-)%)", '<a href="%2">%1</a>'
  text


class Formatter
  @block_tags:
    paragraph: "p"
    list: "ul"
    ordered: "ol"

  new: (opts={}) =>
    @heading_offset = opts.heading_offset or 0
    @out = {}
    @mode = nil
    @buffer = {}

  flush: =>
    switch @mode
      when "paragraph"
        insert @out, "<p>#{inline concat(@buffer, " ")}</p>"
      when "list", "ordered"
        tag = @@block_tags[@mode]
        items = ["  <li>#{inline item}</li>" for item in *@buffer]
        insert @out, "<#{tag}>\n#{concat items, "\n"}\n</#{tag}>"
      when "code"
        insert @out, "<pre><code>#{escape concat(@buffer, "\n")}</code></pre>"
    @buffer = {}
    @mode = nil

  start: (mode) =>
    @flush! unless @mode == mode
    @mode = mode

  line: (line) =>
    if @mode == "code"
      if line\match "^```"
        @flush!
      else
        insert @buffer, line
      return

    level, title = line\match "^(#+)%s+(.*)$"
    bullet = line\match "^%s*[%-%*]%s+(.*)$"
    numbered = line\match "^%s*%d+%.%s+(.*)$"
    if level
      @flush!
      n = math.min #level + @heading_offset, 6
      insert @out, "<h#{n}>#{inline title}</h#{n}>"
    elseif line\match "^```"
      @flush!
      @mode = "code"
    elseif bullet
      @start "list"
      insert @buffer, bullet
    elseif numbered
      @start "ordered"
      insert @buffer, numbered
    elseif line\match "^%s*$"
      @flush!
    else
      @start "paragraph"
      insert @buffer, (line\gsub "^%s+", "")

  format: (text) =>
    @out = {}
    for line in (text .. "\n")\gmatch "([^\n]*)\n"
      @line line
    @flush!
    concat @out, "\n"


-- Renders to plain text by stripping the tags the parent produced
class PlainFormatter extends Formatter
  format: (text) =>
    html = super text
    replacements = {
      { "<li>", "• " }
      { "<[^>]+>", "" }
      { "&lt;", "<" }
      { "&gt;", ">" }
      { "&amp;", "&" }
    }
    for {pattern, repl} in *replacements
      html = html\gsub pattern, repl
    html


markdown = (text, opts) -> Formatter(opts)\format text

SAMPLE = [[
# Release notes

Version **2.1** ships a *much* faster parser and `--watch` mode.
Thanks to José and 田中さん for the [bug reports](https://example.com/bugs).

- new: incremental builds
- fixed: crash on empty <input>

1. Upgrade
2. Run the migrations
]]

{ :Formatter, :PlainFormatter, :markdown, :escape, :inline, :SAMPLE }
