-- Error-heavy: every iteration raises an error 10 frames deep and catches it
-- with pcall (a setjmp, then a longjmp through those frames).
local n = tonumber(arg and arg[1]) or 20000
local function dive(d, i)
  if d == 0 then error({ code = i }) end
  return dive(d - 1, i) + 1
end
local caught = 0
for i = 1, n do
  local ok, e = pcall(dive, 10, i)
  if not ok and e.code == i then caught = caught + 1 end
end
print("caught", caught, "of", n)
