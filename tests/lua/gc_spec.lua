-- gc_spec.lua: C memory behind tensors is returned even when the tensors live long enough to
-- grow old in Lua's generational collector (the input batch of a training step does).
local pr = require "prunert"

local function rss_mb()
    local f = io.open("/proc/self/status")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return tonumber(s:match("VmRSS:%s+(%d+)")) / 1024
end

describe("memory", function()
    local sanitized = os.getenv("LD_PRELOAD") and os.getenv("LD_PRELOAD"):find("asan")

    it("stays bounded when each tensor outlives a minor collection", function()
        if sanitized or not rss_mb() then return end -- ASan's quarantine holds freed memory
        collectgarbage("generational")
        collectgarbage()
        local before = rss_mb()
        -- each tensor is held while the next four are made (as a batch is held through a
        -- step's forward and backward), so it outlives two minor collections and grows old
        local ring = {}
        for i = 1, 400 do
            ring[i % 5 + 1] = pr.ones(256 * 1024) -- 1 MiB, pages touched
        end
        local grown = rss_mb() - before
        ring = nil
        assert.is_true(grown < 150, string.format("RSS grew by %.0f MB for 400 MiB of short-lived tensors", grown))
        collectgarbage("incremental")
    end)
end)
