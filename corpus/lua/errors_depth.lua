-- error/pcall/xpcall at depth: a recursion 100 deep raises an error that is
-- caught at several levels; tracebacks are reduced to their line count sign
-- and first line so they do not depend on the interpreter's own frames.

local function dive(n, at)
  if n == at then error("bottom at " .. n) end
  return dive(n + 1, at) + 1 -- not a tail call: keeps the frames
end

local ok, err = pcall(dive, 1, 100)
print("pcall depth 100:", ok, err)

-- caught at several levels: every 10th frame has its own pcall
local caught = {}
local function layered(n)
  if n == 100 then error({ depth = n }) end
  if n % 10 == 0 then
    local ok2, e = pcall(layered, n + 1)
    caught[#caught + 1] = n
    if not ok2 then
      e.depth = e.depth - 1
      error(e, 0) -- rethrow the same table
    end
    return e
  end
  return layered(n + 1)
end
local ok3, e3 = pcall(layered, 1)
print("layered:", ok3, type(e3), e3.depth, table.concat(caught, ","))

-- xpcall with a handler that sees the error at depth
local function handler(msg)
  local tb = debug.traceback(msg, 2)
  local first = tb:match("^[^\n]*")
  return first .. " | traceback has lines: " .. tostring(select(2, tb:gsub("\n", "\n")) > 3)
end
print("xpcall:", xpcall(dive, handler, 1, 60))

-- xpcall with arguments and a handler that errors itself
print("xpcall bad handler:", xpcall(function() error("first") end, function(m) error("again") end))

-- nested pcall inside xpcall inside pcall
print(pcall(function()
  return xpcall(function()
    local a, b = pcall(error, "inner", 0)
    error("outer after " .. tostring(a) .. "/" .. b, 0)
  end, function(m) return "handled: " .. m end)
end))

-- error values that are not strings keep their type
for _, v in ipairs({ 42, true, "s" }) do
  local okv, ev = pcall(error, v)
  print("error value", type(ev), tostring(ev))
end
local okn, en = pcall(error)
print("error()", okn, en)

-- stack overflow is caught too
local function inf(n) return 1 + inf(n + 1) end
local oko, eo = pcall(inf, 1)
print("overflow:", oko, (tostring(eo):match("stack overflow")))

-- depth after all that: the interpreter is still fine
local s = 0
for i = 1, 100 do
  local okk = pcall(dive, 1, i)
  if not okk then s = s + 1 end
end
print("caught", s, "of 100")
