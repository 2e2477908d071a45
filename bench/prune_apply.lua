-- bench/prune_apply.lua: how long pruning itself takes (the pruning engine issue).
--
--   build/bin/prunert bench/prune_apply.lua [--runs 7]
--
-- Times, as medians: selecting one threshold over 10 million scores through the Lua API
-- (prune_core.threshold_amount, the call prune.apply makes; target < 60 ms, the copy included), and one whole pr.prune.apply() on LeNet-5 for
-- several criteria and scopes, beside a Lua criterion doing the same as the built-in l1, to show
-- a user's criterion runs at the same speed (its heavy work is still the C calls).
local pr = require "prunert"
local nn = pr.nn

local runs = 7
for i = 1, #arg do if arg[i] == "--runs" then runs = tonumber(arg[i + 1]) end end

local function median(t)
    table.sort(t)
    local n = #t
    return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function time(fn, setup)
    local ts = {}
    for r = 1, runs do
        local state = setup and setup()
        local t0 = pr.clock()
        fn(state)
        ts[r] = pr.clock() - t0
    end
    return median(ts)
end

pr.seed(1)
local scores = pr.rand(10000000)
-- what prune.apply calls: copy + O(n) selection + exact tie count
local t_sel = time(function() pr.prune_core.threshold_amount(scores, 0.9) end)
print(string.format("threshold over 10M scores (amount 0.9, copy included): %.1f ms (target < 60 ms)", t_sel * 1000))

local function lenet()
    pr.seed(2)
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
end

local cases = {
    {"l1, per layer, 50%", {criterion = "l1", amount = 0.5}},
    {"l1, global, 90%", {criterion = "l1", amount = 0.9, scope = "global"}},
    {"l2 filters, 50%", {criterion = "l2", granularity = "filter", amount = 0.5}},
    {"mu - k*sigma, k = 1", {criterion = "l1", k = 1}},
    {"2:4 (conv1's 25 inputs excluded)", {criterion = "l1", granularity = {n = 2, m = 4}, exclude = {"0.weight"}}},
    {"Lua criterion |w|, per layer, 50%", {criterion = function(ctx) return ctx.weight:abs() end, amount = 0.5}},
}
print(string.format("pr.prune.apply on LeNet-5 (431k weights), medians of %d runs:", runs))
for _, c in ipairs(cases) do
    local t = time(function(m) pr.prune.apply(m, c[2]) end, lenet)
    print(string.format("  %-36s %8.2f ms", c[1], t * 1000))
end
