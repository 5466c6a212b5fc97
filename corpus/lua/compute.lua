-- a compute loop: fib, string building, table sort, closures.
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
print("fib(24)", fib(24))

local parts = {}
for i = 1, 20000 do parts[#parts + 1] = string.format("%05d", (i * 7919) % 100000) end
local s = table.concat(parts, ",")
print("len", #s, s:sub(1, 23))

local t = {}
local x = 12345
for i = 1, 30000 do x = (x * 1103515245 + 12345) % 2147483648; t[i] = x end
table.sort(t)
local okSorted = true
for i = 2, #t do if t[i - 1] > t[i] then okSorted = false end end
print("sorted", okSorted, t[1], t[#t])
table.sort(t, function(a, b) return a > b end)
print("desc", t[1], t[#t])

local words = {}
for w in ("the quick brown fox jumps over the lazy dog the end"):gmatch("%a+") do
  words[w] = (words[w] or 0) + 1
end
local keys = {}
for k in pairs(words) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do io.write(k, "=", words[k], " ") end
print()

local acc = 0
for i = 1, 200000 do acc = (acc + i * i) % 1000003 end
print("acc", acc)
local h = 0
for i = 1, 3000 do h = (h * 31 + #tostring(i) + i) & 0xffffffff end
print("hash", h)
