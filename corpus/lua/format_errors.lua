-- string.format and friends: bad argument messages.
local cases = {
  function() return string.format("%d", "x") end,
  function() return string.format("%d", 1.5) end,
  function() return string.format("%s") end,
  function() return string.format("%q", {}) end,
  function() return string.format("%y", 1) end,
  function() return string.format("%10.123f", 1) end,
  function() return string.format("%", 1) end,
  function() return ("x"):rep(-1, 5) .. string.rep() end,
  function() return string.sub() end,
  function() return string.char(256) end,
  function() return ("abc"):byte(1, 2, 3, {}) .. math.floor("a") end,
  function() return tostring() end,
  function() return setmetatable(1, {}) end,
  function() return ipairs() end,
  function() return table.concat({ 1, {}, 3 }) end,
  function() return table.insert({}, 1, 2, 3) end,
  function() return string.gsub("x", "(", "") end,
  function() return string.find("x", "[a") end,
  function() return math.random(2, 1) end,
  function() return utf8.char(-1) end,
  function() return select(0, 1) end,
  function() return tonumber("10", 99) end,
  function() return string.pack("i17", 1) end,
  -- (the errno number io.open returns third is left out: wasi numbers differ)
  function() local f, msg = io.open("/nonexistent/dir/file"); return f, msg end,
}
for i, f in ipairs(cases) do
  print(i, pcall(f))
end
print(string.format("%5d|%-5s|%q|%x|%5.2s|%%", 42, "ab", "a\n\"b\0", 255, "xyz"))
print(string.format("%q", 1 / 0), string.format("%q", math.mininteger), string.format("%.3f", 2 / 3))
