-- spec_util.lua: what several specs need to run the built program and read what it wrote.
-- (tests/lua is on the specs' LUA_PATH: `local util = require "spec_util"`.)
local util = {}

util.build = os.getenv("PRUNERT_BUILD_DIR") or "build"
util.source = os.getenv("PRUNERT_SOURCE_DIR") or "."
util.exe = util.build .. "/bin/prunert"

-- A string quoted for the shell.
function util.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A whole file's bytes, or nil when it cannot be opened.
function util.slurp(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

return util
