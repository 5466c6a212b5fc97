-- Compute only: nothing raises, nothing unwinds. Tables, strings, closures,
-- floating point; prints a checksum so the work cannot be skipped.
local n = tonumber(arg and arg[1]) or 300000
local t, s = {}, 0
for i = 1, n do t[i] = (i * 7919) % 10007 end
table.sort(t)
for i = 1, n, 3 do s = (s + t[i] * i) % 1000000007 end
local parts = {}
for i = 1, n // 10 do parts[#parts + 1] = string.format("%x", i * 31) end
local str = table.concat(parts, ",")
local count = 0
for w in str:gmatch("[^,]+") do count = count + #w end
local function fib(k) if k < 2 then return k end return fib(k - 1) + fib(k - 2) end
local x = 0.0
for i = 1, n do x = x + math.sin(i) * math.sqrt(i) end
print(s, count, fib(24), string.format("%.3f", x))
