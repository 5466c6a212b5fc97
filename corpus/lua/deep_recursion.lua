-- 10,000-deep Lua recursion with a pcall every 64 levels (156 nested
-- protected calls; one every 10 levels would pass Lua's limit of 200 nested
-- C calls). Pass 1 raises an error at the bottom that the innermost pcall
-- catches and every pcall above re-raises; pass 2 returns normally through
-- the same frames; pass 3 raises a string error (with position) and lets
-- each pcall rewrap it. Pass 4 tries a pcall every 10 levels and reports
-- only that it ran into "C stack overflow". Prints checksums.

local DEPTH = 10000
local EVERY = 64
local M = 1000000007

-- pass 1: error at the bottom, rethrown by each pcall
local catches = 0
local function down(n, acc)
  acc = (acc * 31 + n) % M
  if n == DEPTH then error({ sum = acc, hops = 0 }) end
  if n % EVERY == 0 then
    local ok, e = pcall(down, n + 1, acc)
    if ok then return e end
    catches = catches + 1
    e.sum = (e.sum * 131 + n) % M
    e.hops = e.hops + 1
    error(e, 0)
  end
  local r = down(n + 1, acc)
  return r -- keeps the frame (not a tail call)
end
local ok1, e1 = pcall(down, 1, 7)
print("pass 1:", ok1, type(e1), "checksum", e1.sum, "rethrows", e1.hops, "catches", catches)

-- pass 2: a normal return through the same frames
local function up(n)
  if n == DEPTH then return n end
  local v
  if n % EVERY == 0 then
    local ok, r = pcall(up, n + 1)
    assert(ok)
    v = r
  else
    v = up(n + 1)
  end
  return (v * 7 + n) % M
end
print("pass 2:", pcall(up, 1))

-- pass 3: a string error, rewrapped by each pcall on its way up
local function str(n)
  if n == DEPTH then error("bottom " .. n) end
  if n % EVERY == 0 then
    local ok, e = pcall(str, n + 1)
    if ok then return e end
    error("<" .. e, 0)
  end
  local r = str(n + 1)
  return r
end
local ok3, e3 = pcall(str, 1)
print("pass 3:", ok3, #e3, e3:sub(1, 8) .. "..." .. e3:sub(-40))

-- pass 4: a pcall every 10 levels runs out of C levels well before 10,000
local deepest = 0
local function tight(n)
  deepest = n
  if n == DEPTH then return n end
  if n % 10 == 0 then
    local ok, e = pcall(tight, n + 1)
    if ok then return e end
    error(e, 0)
  end
  local r = tight(n + 1)
  return r
end
local ok4, e4 = pcall(tight, 1)
print("pass 4:", ok4, e4, "past level 1000:", deepest > 1000, "reached bottom:", deepest == DEPTH)

-- afterwards the interpreter is fine: the depth again, plainly
local function plain(n) if n == 0 then return 0 end return 1 + plain(n - 1) end
print("plain:", plain(DEPTH))
