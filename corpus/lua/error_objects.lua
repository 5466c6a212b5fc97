-- error objects: tables as errors, __tostring, error levels, nested pcall
-- rethrow, and an uncaught error object at the end (exit status 1).

local E = {}
E.__index = E
E.__tostring = function(e) return "E(" .. e.code .. ": " .. e.msg .. ")" end
local function newE(code, msg) return setmetatable({ code = code, msg = msg }, E) end

local ok, e = pcall(function() error(newE(7, "seven")) end)
print(ok, getmetatable(e) == E, e.code, e.msg, tostring(e))

-- levels: 1 names the function that called error, 2 its caller, 0 nothing
local function lvl(l) error("at level " .. l, l) end
local function caller(l) lvl(l) end
for l = 0, 3 do
  print(l, select(2, pcall(caller, l)))
end

-- assert with a message and with a table
print(pcall(assert, false, "assert message"))
print(pcall(assert, nil))
local oka, ea = pcall(assert, false, newE(1, "from assert"))
print(oka, tostring(ea))

-- nested rethrow keeps the same object
local obj = newE(3, "deep")
local ok2, e2 = pcall(function()
  local ok3, e3 = pcall(function()
    local ok4, e4 = pcall(error, obj)
    assert(not ok4 and e4 == obj)
    error(e4)
  end)
  assert(not ok3 and e3 == obj)
  e3.msg = e3.msg .. "+rethrown"
  error(e3)
end)
print(ok2, e2 == obj, tostring(e2))

-- runtime errors carry positions
print(pcall(function() local t = nil; return t.x end))
print(pcall(function() return 1 + {} end))
print(pcall(function() return #5 end))
print(pcall(function() return ("x") < 1 end))
print(pcall(function() local a; a() end))

-- error in __index, __add and __tostring metamethods
local mt = {
  __index = function(_, k) error("no field " .. k) end,
  __add = function() error({ op = "add" }) end,
}
local t = setmetatable({}, mt)
print(pcall(function() return t.foo end))
local okm, em = pcall(function() return t + 1 end)
print(okm, em.op)
print(pcall(tostring, setmetatable({}, { __tostring = function() error("ts") end })))
print(pcall(tostring, setmetatable({}, { __tostring = function() return 1 end })))

-- an uncaught error object with __tostring ends the script
error(newE(99, "uncaught"))
