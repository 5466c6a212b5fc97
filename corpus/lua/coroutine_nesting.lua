-- Coroutines resumed inside pcall inside coroutines: 150 levels that
-- alternate between a coroutine (odd levels) and a pcall (even levels). The
-- bottom first yields three times; each yield is relayed outward through all
-- 75 coroutines (every one of them yielding across its pcall) to the main
-- thread and the answer travels back down. Then the bottom raises an error
-- that every level catches and re-raises up to the top. Then the same with
-- coroutine.wrap, and a pure coroutine nesting that ends in "C stack
-- overflow" (where exactly it happens is not printed).

local LEVELS = 150

local trail = {}
local closed = {}
local pings = {}

local function mark(n, what) trail[#trail + 1] = what .. n end

-- resumes co with the arguments; while it yields, passes each yielded value
-- outward (yielding ourselves) or, in the main thread, answers it
local function relay(n, co, ...)
  local res = table.pack(coroutine.resume(co, ...))
  while res[1] and coroutine.status(co) == "suspended" do
    local v = res[2] + n
    local answer
    if coroutine.isyieldable() then
      answer = coroutine.yield(v)
    else
      pings[#pings + 1] = v
      answer = #pings * 1000
    end
    res = table.pack(coroutine.resume(co, answer + n))
  end
  return table.unpack(res, 1, res.n)
end

local level

local function bottom(n)
  local sum = 0
  for i = 1, 3 do
    sum = sum + coroutine.yield(i)
  end
  error("bottom at level " .. n .. ", answers summed to " .. sum, 0)
end

level = function(n)
  if n > LEVELS then return bottom(n) end
  if n % 2 == 1 then
    local co = coroutine.create(level)
    local ok, e = relay(n, co, n + 1)
    mark(n, ok and "C+" or "C-")
    if not ok then error(e, 0) end
    return e
  else
    local ok, e = pcall(function()
      local guard <close> = setmetatable({}, { __close = function() closed[#closed + 1] = n end })
      return level(n + 1)
    end)
    mark(n, ok and "P+" or "P-")
    if not ok then error(e, 0) end
    return e
  end
end

local ok, e = pcall(level, 1)
print("1: outer pcall:", ok, e)
print("1: pings seen by the main thread:", table.concat(pings, " "))
print("1: levels unwound:", #trail, "guards closed:", #closed)
for i = 1, #trail, 25 do
  print("  " .. table.concat(trail, " ", i, math.min(i + 24, #trail)))
end
print("1: first guards closed:", table.concat(closed, " ", 1, 5), "last:", closed[#closed])

-- 2. the same nesting with coroutine.wrap: the wrapper re-raises the error
-- in the resumer, prefixing a string error with the position of the call
local wraps = 0
local function wlevel(n)
  if n > LEVELS then error("wrapped bottom " .. n) end
  if n % 2 == 1 then
    wraps = wraps + 1
    return coroutine.wrap(wlevel)(n + 1)
  end
  local okw, ew = pcall(wlevel, n + 1)
  if not okw then error(ew, 0) end
  return ew
end
local ok2, e2 = pcall(wlevel, 1)
local prefixes = select(2, e2:gsub("coroutine_nesting%.lua:%d+: ", ""))
print("2:", ok2, "wraps:", wraps, "position prefixes:", prefixes,
  "message ends:", (e2:gsub("^.*: ", "")))

-- 3. a normal return value through the same 150 levels
local function rlevel(n)
  if n > LEVELS then return n, "end" end
  if n % 2 == 1 then
    local co = coroutine.create(rlevel)
    local okc, a, b = coroutine.resume(co, n + 1)
    assert(okc and coroutine.status(co) == "dead")
    return a + n, b
  end
  local okp, a, b = pcall(rlevel, n + 1)
  assert(okp)
  return a + n, b
end
print("3:", pcall(rlevel, 1))

-- 4. pure coroutine nesting: ends at the C-stack limit, caught at every
-- level above
local reached = 0
local function clevel(n)
  reached = n
  local co = coroutine.create(clevel)
  local okc, ec = coroutine.resume(co, n + 1)
  if not okc then error(ec, 0) end
  return ec
end
local ok4, e4 = pcall(clevel, 1)
print("4:", ok4, e4, "deeper than 150:", reached > 150)

-- 5. afterwards, coroutines still work
local gen = coroutine.wrap(function() for i = 1, 5 do coroutine.yield(i * i) end end)
local s = 0
for _ = 1, 5 do s = s + gen() end
print("5:", s)
