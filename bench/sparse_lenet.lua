-- sparse_lenet.lua: does pruning make LeNet-5 inference faster? Trains LeNet-5 briefly on
-- Fashion-MNIST, prunes it to --amount (0.9) globally by magnitude, runs pr.optimize on a test
-- batch, then times evaluating the 10k test images with the dense model and with the optimised
-- one, alternating run by run (so a change of machine load hits both), --runs times each.
--
--   build/bin/prunert bench/sparse_lenet.lua                 # 1 epoch on 20k images, 5 runs
--   build/bin/prunert bench/sparse_lenet.lua --epochs 0      # untrained weights (faster; the
--                                                            # sparsity per layer then differs)
--   build/bin/prunert bench/sparse_lenet.lua --model FILE    # a trained dense LeNet-5 file
--
-- Prints the optimiser's per-layer table, then `name value` lines: dense_s, sparse_s (medians
-- of the whole-test-set evaluation, seconds), speedup (dense_s / sparse_s), accuracy of both
-- (they must agree), and target_speedup 2. Exits 1 when the speedup is below the target.
local pr = require "prunert"
local cli = require "prunert.cli"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "sparse_lenet",
    summary = "LeNet-5 at 90% global sparsity: dense vs pr.optimize'd evaluation of 10k images.",
    {"epochs", "int", 1, "training epochs before pruning (0: untrained weights)"},
    {"train_size", "int", 20000, "training images (0 = all 60000)"},
    {"amount", "number", 0.9, "global magnitude pruning amount"},
    {"runs", "int", 5, "timed evaluations of each model (medians)"},
    {"batch", "int", 1000, "evaluation batch size"},
    {"model", "string", "", "load this trained dense LeNet-5 instead of training"},
    {"seed", "int", 1, "random seed"},
})

local function median(xs)
    local s = {}
    for i, v in ipairs(xs) do s[i] = v end
    table.sort(s)
    local n = #s
    return n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
end

pr.seed(opt.seed)
local test = pr.data.fashion_mnist{split = "test"}
local model
if opt.model ~= "" then
    model = assert(pr.load(opt.model))
else
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    if opt.epochs > 0 then
        local train = pr.data.fashion_mnist{split = "train",
                                            limit = opt.train_size > 0 and opt.train_size or nil}
        pr.train.fit(model, train, {epochs = opt.epochs, batch = 64, lr = 0.05})
    end
end

pr.prune.apply(model, {scope = "global", amount = opt.amount})
local sparse = model:clone()   -- clones carry no plans: `model` stays dense
sparse:eval()
model:eval()
print(string.format("sparse kernels: %s, threads %d", pr.core.sparse_kernel(), pr.core.threads()))
pr.optimize(sparse, test.x:narrow(1, 1, opt.batch), {repeats = 5})

local function evaluate(m)
    local t0 = pr.clock()
    local _, acc = pr.train.evaluate(m, test, {batch = opt.batch})
    return pr.clock() - t0, acc
end

evaluate(model)   -- warm-up both (first-touch of buffers, thread start)
evaluate(sparse)
local td, ts = {}, {}
local acc_d, acc_s
for i = 1, opt.runs do
    td[i], acc_d = evaluate(model)
    ts[i], acc_s = evaluate(sparse)
end
local d, s = median(td), median(ts)
print(string.format("dense_runs_s %s", table.concat(td, " ")))
print(string.format("sparse_runs_s %s", table.concat(ts, " ")))
print(string.format("dense_s %.4f", d))
print(string.format("sparse_s %.4f", s))
print(string.format("speedup %.2f", d / s))
print(string.format("dense_accuracy %.4f", acc_d))
print(string.format("sparse_accuracy %.4f", acc_s))
print("target_speedup 2")
if math.abs(acc_d - acc_s) > 1e-3 then
    io.stderr:write("sparse_lenet: the optimised model's accuracy differs from the dense one\n")
    os.exit(1)
end
if d / s < 2 then os.exit(1) end
