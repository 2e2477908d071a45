-- bench/train_speed.lua: the training-speed targets of the data/training issue.
--
--   build/bin/prunert bench/train_speed.lua [--runs 3] [--threads 2] [--torch]
--
-- Prints, as medians of --runs runs: one LeNet-5 epoch on Fashion-MNIST (60k, batch 256,
-- SGD momentum 0.9), evaluation of the 10k test images, one epoch of seed 000's MLP
-- 784-128-10 at batch 64, and peak resident memory: at the end of the first LeNet-5 epoch (the
-- target: data sets loaded plus training) and over the whole run (evaluation at batch 1000
-- makes 4x larger activations, which the buffer cache then keeps). With --torch and Debian's
-- python3-torch installed, bench/torch_ref.py runs the same work in PyTorch in the same session
-- and the ratios are printed beside.
local pr = require "prunert"
local nn = pr.nn

local opts = {runs = 3, threads = nil, torch = false, epochs = 1}
local i = 1
while i <= #arg do
    local a = arg[i]
    if a == "--runs" then opts.runs = tonumber(arg[i + 1]); i = i + 1
    elseif a == "--threads" then opts.threads = tonumber(arg[i + 1]); i = i + 1
    elseif a == "--torch" then opts.torch = true
    else error("train_speed: unknown option " .. a) end
    i = i + 1
end
if opts.threads then pr.set_threads(opts.threads) end

local function median(t)
    local c = {}
    for k, v in ipairs(t) do c[k] = v end
    table.sort(c)
    local n = #c
    return n % 2 == 1 and c[(n + 1) // 2] or (c[n // 2] + c[n // 2 + 1]) / 2
end

local function lenet()
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
end
local function mlp()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
end

local function peak_rss_mb()
    local f = io.open("/proc/self/status")
    if not f then return 0 end
    local s = f:read("a")
    f:close()
    return (tonumber(s:match("VmHWM:%s+(%d+)")) or 0) / 1024
end

local train = pr.data.fashion_mnist{split = "train"}
local test = pr.data.fashion_mnist{split = "test"}

local function time_fit(build, batch)
    pr.seed(1)
    local m = build()
    local opt = pr.optim.SGD(m:parameters(), {lr = 0.01, momentum = 0.9})
    local t0 = pr.clock()
    pr.train.fit(m, train, {epochs = 1, batch = batch, optimizer = opt, progress = false, quiet = true})
    return pr.clock() - t0, m
end

local lenet_t, eval_t, mlp_t = {}, {}, {}
local model, train_mem
for r = 1, opts.runs do
    local t
    t, model = time_fit(lenet, 256)
    lenet_t[r] = t
    train_mem = train_mem or peak_rss_mb()
    local t0 = pr.clock()
    pr.train.evaluate(model, test, {batch = 1000})
    eval_t[r] = pr.clock() - t0
    mlp_t[r] = time_fit(mlp, 64)
end
local _, acc = pr.train.evaluate(model, test)

local rows = {
    {"LeNet-5 epoch (60k, batch 256)", median(lenet_t), 10.0, "lenet_epoch"},
    {"LeNet-5 evaluate 10k", median(eval_t), 0.55, "lenet_eval"},
    {"MLP 784-128-10 epoch (batch 64)", median(mlp_t), 0.5, "mlp_epoch"},
}
local mem = peak_rss_mb()

local torch = {}
if opts.torch then
    local src = os.getenv("PRUNERT_SOURCE_DIR") or "."
    -- Debian's interpreter: the one python3-torch is installed for (a pyenv or venv python3
    -- first on PATH usually has neither torch nor numpy). PRUNERT_PYTHON overrides it.
    local py = os.getenv("PRUNERT_PYTHON") or "/usr/bin/python3"
    local p = io.popen(py .. " " .. src .. "/bench/torch_ref.py --runs " .. opts.runs .. " 2>/dev/null")
    if p then
        for line in p:lines() do
            local k, v = line:match("^(%S+)%s+([%d%.]+)$")
            if k then torch[k] = tonumber(v) end
        end
        p:close()
    end
end

print(string.format("prunert %s, %d threads, medians of %d runs", pr.version or "?", pr.threads(), opts.runs))
print(string.format("%-34s %10s %10s %10s %12s", "what", "seconds", "target", "torch", "torch ratio"))
for _, r in ipairs(rows) do
    local t = torch[r[4]]
    print(string.format("%-34s %10.3f %10.2f %10s %12s", r[1], r[2], r[3],
        t and string.format("%.3f", t) or "-", t and string.format("%.1fx faster", t / r[2]) or "-"))
end
print(string.format("%-34s %10.1f %10d %10s %12s", "peak memory training LeNet-5 (MB)", train_mem, 150, "-", "-"))
print(string.format("%-34s %10.1f %10s %10s %12s", "peak memory, whole run (MB)", mem, "-",
    torch.peak_mb and string.format("%.1f", torch.peak_mb) or "-",
    torch.peak_mb and string.format("%.1fx less", torch.peak_mb / mem) or "-"))
print(string.format("LeNet-5 test accuracy after one epoch: %.2f%%", 100 * acc))
