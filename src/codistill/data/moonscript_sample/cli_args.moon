-- cli_args.moon
-- A small command-line argument parser: flags (--verbose, -v), options
-- with values (--out=file, -o file), repeatable options, positional
-- arguments, "--" to stop option parsing, and generated help text.

import insert, concat from table
import format from string

export ArgParser

local build_backup_cli

EPILOG = [[
Examples:
  backup --verbose --out=/tmp/archive.tar src/ docs/
  backup -o out.tar -x '*.log' -x '*.tmp' .
]]

class ArgumentError
  new: (@message) =>

  __tostring: => "error: #{@message}"


class ArgParser
  new: (@prog="app", @description="", @epilog) =>
    @options = {}
    @by_name = {}
    @positionals = {}

  -- spec fields: short, help, default, flag, multiple
  option: (long, spec={}) =>
    spec.long = long
    spec.dest = spec.dest or (long\gsub "%-", "_")
    @by_name["--#{long}"] = spec
    @by_name["-#{spec.short}"] = spec if spec.short
    insert @options, spec
    @

  flag: (long, short, help) =>
    @option long, { :short, :help, flag: true, default: false }

  positional: (name, help="") =>
    insert @positionals, { :name, :help }
    @

  parse: (argv=arg or {}) =>
    result = {spec.dest, spec.default for spec in *@options when spec.default != nil}
    for spec in *@options
      result[spec.dest] = {} if spec.multiple and result[spec.dest] == nil
    rest = {}
    i = 1
    while i <= #argv
      token = argv[i]
      name, inline_value = token\match "^(%-%-[^=]+)=(.*)$"
      name = token unless name
      spec = @by_name[name]
      if token == "--"
        insert rest, a for a in *argv[i + 1,]
        break
      elseif spec
        value = true
        unless spec.flag
          value = inline_value
          unless value
            i += 1
            value = argv[i]
          error ArgumentError "option #{name} expects a value" if value == nil
        if spec.multiple
          insert result[spec.dest], value
        else
          result[spec.dest] = value
      elseif token\sub(1, 1) == "-" and #token > 1
        error ArgumentError "unknown option: #{token}"
      else
        insert rest, token
      i += 1
    for idx, pos in ipairs @positionals
      result[pos.name] = rest[idx]
    result.args = [a for a in *rest[#@positionals + 1,]]
    result

  help: =>
    usage = { "usage: #{@prog} [options]" }
    insert usage, "<#{p.name}>" for p in *@positionals
    lines = { concat(usage, " "), "" }
    insert lines, @description if #@description > 0
    insert lines, "\noptions:"
    for spec in *@options
      left = "--#{spec.long}"
      left = "-#{spec.short}, #{left}" if spec.short
      left ..= " VALUE" unless spec.flag
      insert lines, format "  %-24s %s", left, spec.help or ""
    insert lines, "\n" .. @epilog if @epilog
    concat lines, "\n"

  safe_parse: (...) =>
    ok, result = pcall @parse, @, ...
    return result if ok
    msg = tostring result
    io.stderr\write msg, "\n\n", @help!, "\n"
    return nil, msg


build_backup_cli = ->
  with ArgParser "backup", "Archive files into a single tarball.", EPILOG
    \flag "verbose", "v", "print every file as it is added"
    \flag "dry-run", "n", "show what would be done"
    \option "out", short: "o", help: "output archive path", default: "backup.tar"
    \option "exclude", short: "x", help: "glob to skip (repeatable)", multiple: true
    \positional "source", "directory to archive"

main = (...) ->
  cli = build_backup_cli!
  opts = cli\safe_parse {...}
  return 1 unless opts
  mode = switch true
    when opts.dry_run then "dry-run"
    when opts.verbose then "verbose"
    else "quiet"
  print "archiving #{opts.source or "."} -> #{opts.out} (#{mode})"
  print "  skipping: #{concat opts.exclude, ", "}" if #opts.exclude > 0
  0

{ :ArgParser, :ArgumentError, :build_backup_cli, :main, :EPILOG }
