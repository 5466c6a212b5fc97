-- A message handler that itself recurses through pcall until Lua's C-stack
-- limit, run for an error raised about 190 protected calls deep. Where
-- exactly "C stack overflow" happens is not printed (only that it did), so
-- the output does not depend on the interpreter's own C levels.

local LEVELS = 190
local handler_runs = 0
local overflow_seen = {}

-- recurses through pcall until the C stack gives out; returns the depth it
-- reached and the overflow message
local function sink(n)
  local ok, a, b = pcall(sink, n + 1)
  if ok then return a, b end
  return n, a -- a: the error of the level below (the overflow)
end

local function handler(msg)
  handler_runs = handler_runs + 1
  local depth, err = sink(1)
  overflow_seen[#overflow_seen + 1] = tostring(err)
  return "handled(" .. tostring(msg) .. ") sink>0:" .. tostring(depth > 0)
end

-- 1. LEVELS nested pcalls; the bottom runs xpcall with the handler around an
-- error; its result is re-raised through every level up to the outer pcall.
local rethrown = 0
local function nest(n)
  if n == LEVELS then
    local ok, msg = xpcall(function() error("boom at " .. n, 0) end, handler)
    error({ ok = ok, msg = msg }, 0)
  end
  local ok, e = pcall(nest, n + 1)
  if not ok then
    rethrown = rethrown + 1
    error(e, 0)
  end
  return e
end
local ok, e = pcall(nest, 1)
print("1: outer pcall", ok, type(e), e.ok, e.msg)
print("1: rethrown by", rethrown, "levels; handler runs", handler_runs)
print("1: sink ended with:", overflow_seen[1])

-- 2. every level is an xpcall with the handler: only the innermost runs it
-- (the error is caught there), then the results travel up as return values.
handler_runs = 0
overflow_seen = {}
local function nestx(n)
  if n == LEVELS then error("deep " .. n, 0) end
  local okx, r = xpcall(nestx, handler, n + 1)
  if okx then return r end
  return "level " .. n .. " got: " .. r
end
print("2:", pcall(nestx, 1))
print("2: handler runs", handler_runs, overflow_seen[1])

-- 3. a handler that raises an error itself: Lua calls the handler for the
-- handler's own error, and so on, until it gives up with "error in error
-- handling" (the handler runs a platform-independent number of times, which
-- is not printed).
local bad_runs = 0
local function badhandler(m)
  bad_runs = bad_runs + 1
  error("handler failed on " .. type(m), 0)
end
local function nestbad(n)
  if n == LEVELS then
    return xpcall(function() error("raised at " .. n, 0) end, badhandler)
  end
  local okb, a, b = pcall(nestbad, n + 1)
  if okb then return a, b end
  error(a, 0)
end
local o1, o2, o3 = pcall(nestbad, 1)
print("3:", o1, o2, o3, "handler ran more than once:", bad_runs > 1)

-- 4. the same handler recursion at the top level (no nesting), for contrast
handler_runs = 0
overflow_seen = {}
print("4:", xpcall(function() error({ code = 7 }) end, function(m)
  local h = handler("code " .. m.code)
  return h
end))
print("4: handler runs", handler_runs, overflow_seen[1])

-- 5. a handler that recurses through xpcall with itself as the handler,
-- erroring at each level, run for an error 150 plain Lua calls deep: the
-- recursion ends at the C-stack limit and every level reports the one below
local depth5 = 0
local function rec_handler(m)
  depth5 = depth5 + 1
  local okr, r = xpcall(function() error("again", 0) end, rec_handler)
  return "[" .. tostring(okr) .. " " .. type(r) .. "]"
end
local function nest5(n)
  if n == 150 then error("five", 0) end
  return nest5(n + 1) + 1 -- not a tail call
end
local ok5, r5 = xpcall(nest5, rec_handler, 1)
print("5:", ok5, r5, "handler recursed:", depth5 > 1)

-- still healthy afterwards
local sum = 0
for i = 1, 50 do
  local okk, v = pcall(function(x) if x % 5 == 0 then error(x) end return x end, i)
  if okk then sum = sum + v end
end
print("after:", sum)
