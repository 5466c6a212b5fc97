-- __gc finalizers with collectgarbage("collect"): output sorted, so the
-- order the collector runs them in does not matter.
local log = {}
local function mk(name)
  return setmetatable({ name = name }, { __gc = function(o) log[#log + 1] = o.name end })
end
for i = 1, 20 do mk("t" .. i) end
local keep = mk("kept")
collectgarbage("collect")
collectgarbage("collect")
table.sort(log)
print(#log, table.concat(log, " "))

-- a finalizer that errors is reported as a warning (off by default) and
-- does not stop the collection
log = {}
setmetatable({}, { __gc = function() error("in gc") end })
mk("after-error")
collectgarbage("collect")
print(#log, log[1])

-- resurrection: the finalizer stores the object; it runs once only
local saved
do
  local o = setmetatable({ v = 1 }, { __gc = function(o) saved = o; o.v = o.v + 1 end })
end
collectgarbage("collect")
print(saved and saved.v)
saved = nil
collectgarbage("collect")
print(saved)

-- weak tables lose their collected entries
local weak = setmetatable({}, { __mode = "k" })
for i = 1, 10 do weak[{}] = i end
weak[keep] = "k"
collectgarbage("collect")
local n = 0
for _ in pairs(weak) do n = n + 1 end
print("weak entries left", n)

-- finalizers run at close for what is still alive
keep = nil
collectgarbage("collect")
table.sort(log)
print(table.concat(log, " "))
mk("at-exit")
setmetatable({}, { __gc = function() print("closing state runs finalizers") end })
print("end of script")
