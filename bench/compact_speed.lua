-- bench/compact_speed.lua: structural pruning makes the model faster (the structure issue).
--
--   build/bin/prunert bench/compact_speed.lua [--runs 9] [--batch 256]
--
-- LeNet-5 with half of each conv's filters and half of fc1's neurons removed (structured L1,
-- then compaction), forward at batch 256 under no_grad, against the dense model in the same
-- run (target: at least 1.8x faster), with parameter and FLOP counts before and after.
local pr = require "prunert"
local nn = pr.nn

local runs, batch = 9, 256
for i = 1, #arg do
    if arg[i] == "--runs" then runs = tonumber(arg[i + 1]) end
    if arg[i] == "--batch" then batch = tonumber(arg[i + 1]) end
end

local function median(t)
    table.sort(t)
    local n = #t
    return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

pr.seed(1)
local dense = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
    nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
dense:eval()
local small = dense:clone()
local input = {1, 1, 28, 28}
pr.prune.structured(small, {criterion = "l1", amount = 0.5, input = input})
pr.prune.compact(small, {input = input})
small:eval()

local x = pr.rand(batch, 1, 28, 28)
local function time(m)
    local ts = {}
    pr.no_grad(function()
        m(x) -- warm-up
        for r = 1, runs do
            local t0 = pr.clock()
            for _ = 1, 5 do m(x) end
            ts[r] = (pr.clock() - t0) / 5
        end
    end)
    return median(ts)
end
-- interleave so both see the same machine load
local td, ts = {}, {}
for r = 1, 3 do td[r] = time(dense); ts[r] = time(small) end
local t_dense, t_small = median(td), median(ts)

local rd = pr.prune.report(dense, {input = input, quiet = true})
local rs = pr.prune.report(small, {input = input, quiet = true})
print(string.format("LeNet-5 forward, batch %d, medians of %d x 5 calls", batch, runs))
print(string.format("%-10s %12s %12s %14s", "model", "params", "MFLOPs/img", "ms per batch"))
print(string.format("%-10s %12d %12.2f %14.2f", "dense", rd.params, rd.flops / 1e6, t_dense * 1000))
print(string.format("%-10s %12d %12.2f %14.2f", "compacted", rs.params, rs.flops / 1e6, t_small * 1000))
print(string.format("speed-up: %.2fx (target >= 1.8x); parameters %.1fx fewer; FLOPs %.1fx fewer",
    t_dense / t_small, rd.params / rs.params, rd.flops / rs.flops))
