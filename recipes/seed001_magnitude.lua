-- seed001_magnitude.lua: magnitude pruning of LeNet-5 three ways, side by side (seed 001).
--
--   layer-wise   every layer loses the same fraction (--amount, 50%) of its smallest weights
--   global       one threshold across all layers removes the same total fraction
--   statistical  per layer, weights with |w| < mu - k*sigma of that layer's |w| go (--k)
--
-- Each starts from the same trained network, is pruned, then fine-tuned with a tenth of the
-- training learning rate (the seed's advice: 1/10 to 1/100), masks kept.
--
--   prunert recipes/seed001_magnitude.lua [--amount 0.5] [--k 1] [--epochs 1]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "seed001_magnitude",
    summary = "LeNet-5 magnitude pruning: layer-wise vs global vs mu - k*sigma, then fine-tuning at lr/10.",
    cli.common{epochs = 2, lr = 0.03, amount = 0.5, amount_help = "fraction of weights to prune (layer-wise, global)"},
    {"k", "number", 0.5, "statistical threshold mu - k*sigma"},
    {"ft_epochs", "int", 1, "fine-tuning epochs (lr / 10)"},
    {"train_size", "int", 5000, "training images to use (0 = all)"},
})

local train_set, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size or nil})
print(string.format("data: %d training, %d test images", train_set:size(), test_set:size()))

local model = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
local INPUT = {1, 1, 28, 28}
local NAMES = {"conv1", "conv2", "fc1", "fc2"}

local function accuracy(m) local _, acc = pr.train.evaluate(m, test_set) return acc end

print(string.format("\ntraining %d epoch(s), lr %g", opt.epochs, opt.lr))
pr.train.fit(model, train_set, {epochs = opt.epochs, lr = opt.lr, batch = opt.batch})
local dense_acc = accuracy(model)
local dense_file = opt.out .. "/dense.prunert"
assert(pr.save(model, dense_file, {recipe = "seed001_magnitude"}))
print(string.format("dense: accuracy %.2f%%", 100 * dense_acc))

local methods = {
    {name = "layer-wise", prune = {criterion = "magnitude", amount = opt.amount, scope = "layer"}},
    {name = "global", prune = {criterion = "magnitude", amount = opt.amount, scope = "global"}},
    {name = "statistical", prune = {criterion = "magnitude", k = opt.k}},
}

for _, method in ipairs(methods) do
    local m = assert(pr.load(dense_file)) -- the same trained start for every method
    local rep = pr.prune.apply(m, method.prune)
    method.sparsity = rep.sparsity
    method.before = accuracy(m)
    print(string.format("\n%s: %.1f%% of the weights pruned, accuracy %.2f%%; fine-tuning at lr %g",
        method.name, 100 * rep.sparsity, 100 * method.before, opt.lr / 10))
    pr.train.fit(m, train_set, {epochs = opt.ft_epochs, lr = opt.lr / 10, batch = opt.batch})
    method.after = accuracy(m)
    method.report = pr.prune.report(m, {input = INPUT, quiet = true})
    method.mask = plot.mask(opt.out .. "/mask_fc2_" .. method.name .. ".png", m:children()[10]:own_params()[1][2])
    assert(pr.save(m, opt.out .. "/" .. method.name .. ".prunert", {recipe = "seed001_magnitude", method = method.name}))
end

-- ---- results ----
local header = {"method", "weights pruned", "accuracy after pruning", "after fine-tuning", "non-zero params"}
local rows = {{"dense", "0.0%", string.format("%.2f%%", 100 * dense_acc), "", methods[1].report.params}}
for _, m in ipairs(methods) do
    rows[#rows + 1] = {m.name, string.format("%.1f%%", 100 * m.sparsity), string.format("%.2f%%", 100 * m.before),
                       string.format("%.2f%%", 100 * m.after), m.report.nonzero}
end
local layer_header = {"layer"}
for _, m in ipairs(methods) do layer_header[#layer_header + 1] = m.name .. " sparsity" end
local layer_rows = {}
for i, l in ipairs(methods[1].report.layers) do
    local r = {NAMES[i] or l.name}
    for _, m in ipairs(methods) do r[#r + 1] = string.format("%.1f%%", 100 * m.report.layers[i].sparsity) end
    layer_rows[#layer_rows + 1] = r
end
print("\nper layer:\n" .. cli.table(layer_header, layer_rows))
print("\n" .. cli.table(header, rows))

local json = {recipe = "seed001_magnitude", options = opt, dense_accuracy = dense_acc, methods = {}}
for i, m in ipairs(methods) do
    json.methods[i] = {name = m.name, sparsity = m.sparsity, accuracy_before_fine_tune = m.before,
                       accuracy = m.after, nonzero = m.report.nonzero, layers = m.report.layers}
end
cli.write_file(opt.out .. "/results.json", pr.json.encode(json))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local cats, before, after = {}, {}, {}
local sparsity_series = {}
for i, m in ipairs(methods) do
    cats[i], before[i], after[i] = m.name, m.before, m.after
    local s = {}
    for j, l in ipairs(m.report.layers) do s[j] = l.sparsity end
    sparsity_series[i] = {name = m.name, values = s}
end
local images = {
    {title = "Accuracy", path = plot.bars(opt.out .. "/accuracy.svg", {title = "Test accuracy by method",
        ylabel = "accuracy", categories = cats, format = "%.3f",
        series = {{name = "after pruning", values = before}, {name = "after fine-tuning", values = after}}})},
    {title = "Sparsity per layer", path = plot.bars(opt.out .. "/sparsity.svg", {title = "Sparsity per layer",
        ylabel = "fraction pruned", categories = NAMES, format = "%.2f", ymax = 1, series = sparsity_series})},
}
for _, m in ipairs(methods) do images[#images + 1] = {title = "fc2 mask, " .. m.name, path = m.mask} end
report_html.write(opt.out .. "/report.html", {
    title = "LeNet-5 magnitude pruning: layer-wise, global, statistical",
    subtitle = string.format("%d training images, %d + %d epochs", train_set:size(), opt.epochs, opt.ft_epochs),
    intro = string.format("Target %.0f%% for layer-wise and global pruning; mu - %g sigma for the statistical " ..
        "threshold. Fine-tuning used lr %g, a tenth of training's.", 100 * opt.amount, opt.k, opt.lr / 10),
    summary = {title = "Methods", header = header, rows = rows},
    tables = {{title = "Sparsity per layer", header = layer_header, rows = layer_rows}},
    images = images,
    command = "prunert recipes/seed001_magnitude.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/results.json, results.csv, report.html and the models", opt.out))
