-- Error-heavy, for bench/run section 7 (issue 15): N pcalls (default
-- 30,000), each failing D frames down (default 12): the error is raised in
-- the D-th nested Lua call below the pcall, so every iteration is a setjmp
-- and a longjmp across those frames. The error value is the iteration's
-- number (not a string: no position to format), checked on the way out.
local n = tonumber(arg and arg[1]) or 30000
local depth = tonumber(arg and arg[2]) or 12
local function dive(d, i)
  if d == 1 then error(i) end
  return dive(d - 1, i) + 1 -- not a tail call: each level keeps its frame
end
local caught = 0
for i = 1, n do
  local ok, e = pcall(dive, depth, i)
  if not ok and e == i then caught = caught + 1 end
end
print("caught", caught, "of", n, "at depth", depth)
