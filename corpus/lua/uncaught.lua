-- arguments reach the script as `arg` and `...`; an uncaught error from a
-- few calls deep prints "lua5.4: MSG" and a stack traceback on stderr and
-- exits with status 1, as lua.c does.
print("arg[0]", arg[0], "#arg", #arg, "...", select("#", ...), ...)
for i = 1, #arg do print(i, arg[i]) end
io.stderr:write("to stderr\n")
local function inner(x) if x > 2 then error("deep failure " .. x) end return inner(x + 1) + 0 end
local t = {}
function t.method(v) return inner(v) end
local co = coroutine.wrap(function() return t.method(0) end)
print(pcall(string.rep))
co()
print("not reached")
