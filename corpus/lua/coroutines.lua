-- coroutines with errors inside: resume/status/wrap after an error, yield
-- across pcall, errors crossing resume boundaries, close.

local co = coroutine.create(function(a)
  local b = coroutine.yield(a + 1)
  error("inside with " .. b)
end)
print(coroutine.resume(co, 1))
print(coroutine.status(co))
print(coroutine.resume(co, 5))
print(coroutine.status(co))
print(coroutine.resume(co))

-- wrap propagates the error to the caller
local w = coroutine.wrap(function() coroutine.yield(1); error({ tag = "wrapped" }) end)
print(w())
local okw, ew = pcall(w)
print(okw, type(ew), ew.tag)
print(pcall(w))

-- yield across pcall inside the coroutine
local co2 = coroutine.create(function()
  local results = {}
  for i = 1, 5 do
    local ok, v = pcall(function()
      local got = coroutine.yield(i)
      if got % 2 == 0 then error("even " .. got, 0) end
      return got
    end)
    results[#results + 1] = tostring(ok) .. ":" .. tostring(v)
  end
  return table.concat(results, " ")
end)
local v = 0
local step = { coroutine.resume(co2) }
while coroutine.status(co2) == "suspended" do
  v = v + 1
  step = { coroutine.resume(co2, step[2] * 10 + v) }
end
print(table.unpack(step))

-- xpcall across yields, with a handler
local co3 = coroutine.wrap(function()
  return xpcall(function()
    coroutine.yield("y1")
    coroutine.yield("y2")
    error("after yields", 0)
  end, function(m) return "H(" .. m .. ")" end)
end)
print(co3()); print(co3()); print(co3())

-- nested coroutines: an error in the inner one is seen by the outer
local outer = coroutine.create(function()
  local inner = coroutine.create(function() coroutine.yield("inner1"); error("inner fails", 0) end)
  print("  ", coroutine.resume(inner))
  coroutine.yield("outer1")
  print("  ", coroutine.resume(inner))
  print("  ", coroutine.status(inner))
  return "outer done"
end)
print(coroutine.resume(outer))
print(coroutine.resume(outer))
print(coroutine.status(outer))

-- generators with many yields (deep stack inside the coroutine)
local function gen(n)
  return coroutine.wrap(function()
    local function rec(k)
      if k > n then return end
      coroutine.yield(k)
      rec(k + 1)
    end
    rec(1)
  end)
end
local sum = 0
for k in gen(150) do sum = sum + k end
print("sum", sum)

-- resume a dead or running coroutine, yield outside, close
print(coroutine.resume(coroutine.running()))
print(pcall(coroutine.yield, 1))
local co4 = coroutine.create(function() coroutine.yield() end)
coroutine.resume(co4)
print(coroutine.close(co4), coroutine.status(co4))
local co5 = coroutine.create(function()
  local x <close> = setmetatable({}, { __close = function() print("  closed x") end })
  coroutine.yield()
end)
coroutine.resume(co5)
print(coroutine.close(co5))
print(coroutine.isyieldable(), coroutine.wrap(function() return coroutine.isyieldable() end)())
