-- Errors raised in __gc finalizers during collectgarbage() calls made inside
-- nested pcalls (up to 6 levels), and finalizers that use pcall themselves
-- (around errors, around nested pcalls, around error objects that are
-- tables). Warnings stay off, so an error in a finalizer is silent: each
-- finalizer records what it did in a global table, printed sorted afterwards.

LOG = {}

local function note(s) LOG[#LOG + 1] = s end

local function flush(title)
  table.sort(LOG)
  print(title .. " (" .. #LOG .. "): " .. table.concat(LOG, " "))
  LOG = {}
end

-- finalizer kinds
local kinds = {}

kinds.raise = function(o)
  note(o.name .. ":raise")
  error("gc error from " .. o.name)
end

kinds.raise_table = function(o)
  note(o.name .. ":raise_table")
  error({ name = o.name })
end

kinds.protected = function(o)
  local ok, e = pcall(error, "inner " .. o.name, 0)
  note(o.name .. ":protected:" .. tostring(ok) .. ":" .. e)
end

kinds.nested = function(o)
  -- three pcalls deep inside the finalizer, the error rethrown twice
  local ok, e = pcall(function()
    local ok2, e2 = pcall(function()
      local ok3, e3 = pcall(function() error({ depth = 3 }) end)
      error({ depth = e3.depth - 1, inner = ok3 }, 0)
    end)
    error("depth " .. e2.depth .. " inner " .. tostring(e2.inner), 0)
  end)
  note(o.name .. ":nested:" .. tostring(ok) .. ":" .. e)
end

kinds.protected_then_raise = function(o)
  local ok = pcall(error, "x")
  note(o.name .. ":ptr:" .. tostring(ok))
  error("after pcall in " .. o.name)
end

kinds.xpcall = function(o)
  local ok, e = xpcall(function() error("deep in " .. o.name, 0) end,
    function(m) return "handled " .. m end)
  note(o.name .. ":xpcall:" .. tostring(ok) .. ":" .. e)
end

kinds.collect_inside = function(o)
  -- a collection requested from inside a finalizer does not run
  local r = collectgarbage()
  note(o.name .. ":collect_inside:" .. tostring(r))
end

kinds.spawn = function(o)
  -- creates a new finalizable object: it is finalized by a later cycle
  note(o.name .. ":spawn")
  SPAWNED = setmetatable({ name = o.name .. "+" }, { __gc = kinds.raise })
  SPAWNED = nil
end

local order = { "raise", "raise_table", "protected", "nested",
  "protected_then_raise", "xpcall", "collect_inside", "spawn" }

local function make(prefix, count)
  for i = 1, count do
    local k = order[(i - 1) % #order + 1]
    setmetatable({ name = prefix .. i }, { __gc = kinds[k] })
  end
end

-- 1. top level: one of each kind
make("a", #order)
print("collect 1:", collectgarbage())
collectgarbage() -- the spawned object
flush("top")

-- 2. the same inside nested pcalls, collecting at each level on the way
-- down and again on the way back up, then an error at the bottom that is
-- rethrown at every level
local depth_log = {}
local function dive(n)
  make("d" .. n .. "_", 3)
  collectgarbage()
  if n == 6 then error({ level = n }) end
  local ok, e = pcall(dive, n + 1)
  depth_log[#depth_log + 1] = n .. (ok and "ok" or "err")
  make("u" .. n .. "_", 2)
  collectgarbage()
  if not ok then
    e.level = e.level * 10 + n
    error(e, 0)
  end
end
local ok, e = pcall(dive, 1)
collectgarbage()
print("dive:", ok, type(e), e.level, table.concat(depth_log, ","))
flush("nested")

-- 3. a finalizer's error does not disturb the error being raised by the
-- code that called collectgarbage
local ok3, e3 = pcall(function()
  local ok4, e4 = pcall(function()
    make("p", 5)
    collectgarbage()
    error("outer error survives", 0)
  end)
  collectgarbage()
  error(e4 .. " twice", 0)
end)
print("3:", ok3, e3)
flush("surviving")

-- 4. collections inside coroutines inside pcall
local co = coroutine.wrap(function()
  for round = 1, 3 do
    local okc, ec = pcall(function()
      make("c" .. round .. "_", 4)
      collectgarbage()
      coroutine.yield(round)
      error("round " .. round, 0)
    end)
    note("co:" .. tostring(okc) .. ":" .. ec)
  end
  return "done"
end)
local got = {}
for _ = 1, 4 do got[#got + 1] = tostring(co()) end
collectgarbage()
collectgarbage()
print("4:", table.concat(got, " "))
flush("coroutine")

-- 5. many finalizers that raise, collected in one go inside 4 pcalls
local function four(n)
  if n == 0 then
    make("m", 200)
    collectgarbage()
    collectgarbage()
    return "collected"
  end
  local okf, r = pcall(four, n - 1)
  return okf and r or error(r, 0)
end
print("5:", four(4))
local counts = {}
for _, s in ipairs(LOG) do
  local k = s:match("^m%d+:([%a_]+)") or s:match("^m%d+%+:(%a+)")
  if s:match("^m%d+%+") then k = "spawned_" .. k end
  counts[k] = (counts[k] or 0) + 1
end
local keys = {}
for k in pairs(counts) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do io.write(k, "=", counts[k], " ") end
print()
LOG = {}

-- 6. finalizers left for the end of the script: the state closes them
-- silently (their errors are warnings too), nothing is printed after here
make("end", 3)
print("end of script")
