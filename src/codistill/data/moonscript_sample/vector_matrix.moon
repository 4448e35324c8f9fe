-- vector_matrix.moon
-- Small vector and dense matrix helpers with operator overloading.
-- Vectors can have any dimension; matrices are stored row-major.

import sqrt, abs, cos, sin, pi from math
import concat from table

unpack = table.unpack or unpack

EPSILON = 1e-9

class Vector
  new: (...) =>
    @c = {...}
    @n = #@c

  @zero: (n=3) => Vector unpack [0 for _ = 1, n]

  map: (fn) => Vector unpack [fn(x, i) for i, x in ipairs @c]

  zip: (other, fn) =>
    assert @n == other.n, "dimension mismatch: #{@n} vs #{other.n}"
    Vector unpack [fn(x, other.c[i]) for i, x in ipairs @c]

  __add: (other) => @zip other, (a, b) -> a + b
  __sub: (other) => @zip other, (a, b) -> a - b
  __unm: => @map (x) -> -x

  -- vector * number scales, vector * vector is the dot product
  __mul: (k) =>
    if type(k) == "number"
      @map (x) -> x * k
    else
      @dot k

  __eq: (other) =>
    return false unless @n == other.n
    for i = 1, @n
      return false if abs(@c[i] - other.c[i]) > EPSILON
    true

  dot: (other) =>
    sum = 0
    for i, x in ipairs @c
      sum += x * other.c[i]
    sum

  length: => sqrt @dot(self)

  normalized: =>
    len = @length!
    if len < EPSILON then self else self * (1 / len)

  cross: (o) =>
    assert @n == 3 and o.n == 3, "cross product needs 3D vectors"
    {ax, ay, az} = @c
    {bx, by, bz} = o.c
    Vector ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx

  __tostring: =>
    parts = [string.format("%g", x) for x in *@c]
    "(#{concat parts, ", "})"


class Matrix
  new: (@rows, @cols, fill=0) =>
    @data = for _ = 1, @rows
      [fill for _ = 1, @cols]

  @identity: (n) =>
    m = Matrix n, n
    m.data[i][i] = 1 for i = 1, n
    m

  @from_rows: (rows) =>
    m = Matrix #rows, #rows[1]
    for i, row in ipairs rows
      m.data[i][j] = v for j, v in ipairs row
    m

  get: (i, j) => @data[i][j]

  set: (i, j, v) =>
    @data[i][j] = v
    @

  transpose: =>
    t = Matrix @cols, @rows
    for i = 1, @rows
      for j = 1, @cols
        t.data[j][i] = @data[i][j]
    t

  __mul: (other) =>
    return @apply other if other.__class == Vector
    assert @cols == other.rows, "cannot multiply #{@rows}x#{@cols} by #{other.rows}x#{other.cols}"
    out = Matrix @rows, other.cols
    for i = 1, @rows
      for j = 1, other.cols
        sum = 0
        for k = 1, @cols
          sum += @data[i][k] * other.data[k][j]
        out.data[i][j] = sum
    out

  apply: (v) =>
    Vector unpack [Vector(unpack row)\dot(v) for row in *@data]

  __tostring: =>
    lines = for row in *@data
      concat [string.format("%8.3f", x) for x in *row], " "
    concat lines, "\n"


rotation2d = (theta) ->
  c, s = cos(theta), sin(theta)
  Matrix\from_rows {
    { c, -s }
    { s,  c }
  }

kind_of = (value) ->
  return type(value) unless type(value) == "table"
  switch value.__class
    when Vector then "vector(#{value.n})"
    when Matrix then "matrix(#{value.rows}x#{value.cols})"
    else "table"

-- Handy constants
UNIT_X  = Vector 1, 0, 0
UNIT_Y  = Vector 0, 1, 0
UNIT_Z  = Vector 0, 0, 1
ORIGIN  = Vector\zero 3
QUARTER = rotation2d pi / 2

{ :Vector, :Matrix, :rotation2d, :kind_of, :UNIT_X, :UNIT_Y, :UNIT_Z, :ORIGIN, :QUARTER }
