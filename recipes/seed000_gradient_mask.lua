-- seed000_gradient_mask.lua: seed 000's experiment, with its bugs fixed. An MLP 784-128-10 is
-- trained with a gradient mask (updates whose |gradient| is below a threshold are skipped;
-- the seed compared g < t, which also dropped every negative gradient), then three ways of
-- pruning it are compared:
--
--   gradient   weights with the smallest accumulated |dL/dw|          (element)
--   magnitude  weights with the smallest |w|                          (element)
--   activity   hidden neurons with the smallest mean ReLU activation  (neuron)
--
-- For each, the amount (a threshold on its scores) is chosen on a validation split: the
-- largest that keeps validation accuracy within --budget of the unpruned network. Test
-- accuracy is then measured once at that amount. The seed evaluated on its training set
-- and used softmax before cross-entropy; neither is repeated here.
--
--   prunert recipes/seed000_gradient_mask.lua [--reg l1 --reg-strength 1e-4] [--grad-threshold 1e-4]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "seed000_gradient_mask",
    summary = "MLP 784-128-10 with a gradient mask; gradient vs magnitude vs activity pruning, thresholds from validation.",
    cli.common{epochs = 3, lr = 0.05},
    {"grad_threshold", "number", 1e-4, "skip weight updates with |gradient| below this"},
    {"reg", "choice", "none", "regularisation while training", {"none", "l1", "l2"}},
    {"reg_strength", "number", 1e-4, "strength of --reg (l1 coefficient or weight decay)"},
    {"budget", "number", 0.01, "validation accuracy drop allowed when choosing an amount"},
    {"train_size", "int", 20000, "training images to use (0 = all); a sixth is the validation split"},
})

local all_train, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size or nil})
local train_set, val_set = all_train:split(1 / 6, {seed = opt.seed})
print(string.format("data: %d training, %d validation, %d test images", train_set:size(), val_set:size(), test_set:size()))

local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
local sgd = {lr = opt.lr, momentum = 0.9}
if opt.reg == "l1" then sgd.l1 = opt.reg_strength elseif opt.reg == "l2" then sgd.weight_decay = opt.reg_strength end
local optimizer = pr.optim.SGD(model:parameters(), sgd)

-- The gradient mask runs between backward and the optimizer step.
local mask = pr.prune.gradient_mask(model, {threshold = opt.grad_threshold})
print(string.format("\ntraining %d epoch(s), lr %g, regularisation %s, gradient mask |g| < %g", opt.epochs, opt.lr,
    opt.reg, opt.grad_threshold))
pr.train.fit(model, train_set, {epochs = opt.epochs, optimizer = optimizer, batch = opt.batch,
                                before_step = mask.apply, val = val_set})
local suppressed = mask.suppressed / math.max(mask.seen, 1)
print(string.format("gradient mask skipped %.1f%% of the weight updates", 100 * suppressed))

local function accuracy(m, ds) local _, acc = pr.train.evaluate(m, ds) return acc end
local dense_val, dense_test = accuracy(model, val_set), accuracy(model, test_set)
local dense_file = opt.out .. "/dense.prunert"
assert(pr.save(model, dense_file, {recipe = "seed000_gradient_mask", reg = opt.reg}))
print(string.format("dense: validation %.2f%%, test %.2f%%", 100 * dense_val, 100 * dense_test))

-- Scores from gradients and activations are measured on training batches, never on the
-- validation or test images.
local score_data = train_set:subset(1, math.min(2048, train_set:size()))
local methods = {
    {name = "gradient", prune = {criterion = "gradient", data = score_data}},
    {name = "magnitude", prune = {criterion = "magnitude"}},
    {name = "activity", prune = {criterion = "activity", granularity = "neuron", layers = {"1"}, data = score_data}},
}
local AMOUNTS = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95}

local function pruned_copy(method, amount)
    local m = assert(pr.load(dense_file))
    local p = {}
    for k, v in pairs(method.prune) do p[k] = v end
    p.amount = amount
    local rep = pr.prune.apply(m, p)
    return m, rep
end

for _, method in ipairs(methods) do
    method.val = {}
    method.amount = 0
    for i, a in ipairs(AMOUNTS) do
        local m = pruned_copy(method, a)
        method.val[i] = accuracy(m, val_set)
        if dense_val - method.val[i] <= opt.budget then method.amount = a end
    end
    local m, rep = pruned_copy(method, method.amount)
    method.sparsity = rep.sparsity
    method.test = accuracy(m, test_set)
    method.report = pr.prune.report(m, {input = {1, 784}, quiet = true})
    method.mask = plot.mask(opt.out .. "/mask_fc1_" .. method.name .. ".png", m:children()[2]:own_params()[1][2])
    print(string.format("%-9s chosen amount %.2f: %.1f%% of the weights zero, test accuracy %.2f%%", method.name,
        method.amount, 100 * rep.sparsity, 100 * method.test))
end

-- ---- results ----
local header = {"method", "amount (from validation)", "weights pruned", "test accuracy", "change"}
local rows = {{"dense", "", "0.0%", string.format("%.2f%%", 100 * dense_test), ""}}
for _, m in ipairs(methods) do
    rows[#rows + 1] = {m.name, string.format("%.2f", m.amount), string.format("%.1f%%", 100 * m.sparsity),
        string.format("%.2f%%", 100 * m.test), string.format("%+.2f pt", 100 * (m.test - dense_test))}
end
for _, m in ipairs(methods) do
    print(string.format("\nper layer, %s at %.2f:\n%s", m.name, m.amount, pr.prune.report.text(m.report)))
end
print("\n" .. cli.table(header, rows))

local json = {recipe = "seed000_gradient_mask", options = opt, updates_skipped = suppressed,
              dense = {validation = dense_val, test = dense_test}, amounts = AMOUNTS, methods = {}}
for i, m in ipairs(methods) do
    json.methods[i] = {name = m.name, amount = m.amount, sparsity = m.sparsity, test = m.test, validation = m.val}
end
cli.write_file(opt.out .. "/results.json", pr.json.encode(json))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local series, cats, tests = {}, {"dense"}, {dense_test}
for i, m in ipairs(methods) do
    series[i] = {name = m.name, x = AMOUNTS, y = m.val}
    cats[#cats + 1], tests[#tests + 1] = m.name, m.test
end
local images = {
    {title = "Validation accuracy vs amount", path = plot.lines(opt.out .. "/validation.svg", {
        title = "Validation accuracy vs amount pruned", xlabel = "amount", ylabel = "validation accuracy",
        xmin = 0, xmax = 1, ymin = 0, series = series})},
    {title = "Test accuracy at the chosen amounts", path = plot.bars(opt.out .. "/test.svg", {
        title = "Test accuracy at the chosen amounts", ylabel = "test accuracy", categories = cats, format = "%.3f",
        series = {{name = "test accuracy", values = tests}}})},
}
for _, m in ipairs(methods) do images[#images + 1] = {title = "fc1 mask, " .. m.name, path = m.mask} end
report_html.write(opt.out .. "/report.html", {
    title = "Gradient mask training; gradient vs magnitude vs activity pruning",
    subtitle = string.format("MLP 784-128-10, %d training images, %d epochs, regularisation %s", train_set:size(),
        opt.epochs, opt.reg),
    intro = string.format("Training skipped %.1f%% of the weight updates (|g| < %g). Each method's amount is the " ..
        "largest whose validation accuracy stays within %.1f points of the dense network.", 100 * suppressed,
        opt.grad_threshold, 100 * opt.budget),
    summary = {title = "Methods", header = header, rows = rows},
    tables = {report_html.layer_table(methods[1].report, "Per layer, gradient"),
              report_html.layer_table(methods[2].report, "Per layer, magnitude"),
              report_html.layer_table(methods[3].report, "Per layer, activity")},
    images = images,
    command = "prunert recipes/seed000_gradient_mask.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/results.json, results.csv, report.html", opt.out))
