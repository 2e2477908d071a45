-- seed003_depthwise.lua: structured pruning of a small depthwise-separable network with
-- BatchNorm (seed 003). A depthwise conv and the pointwise conv after it decide each channel
-- together: its score is ||dw[i]|| * ||pw[:, i]|| (criterion "dw_coupled"); removing the
-- channel removes the producer's filter, both BatchNorm entries, the depthwise filter and the
-- pointwise input column. The seed's advice, each tried here:
--
--   layer by layer beats one shot            one-shot vs group-by-group with fine-tuning between
--   fine-tuning beats training from scratch  the compacted shape, re-initialised and trained
--   freezing sensitive layers helps          fine-tune with the stem conv (and its BN) frozen
--   BN folds into the conv before it         fold_bn, checked against the unfolded outputs
--
--   prunert recipes/seed003_depthwise.lua [--amount 0.5] [--freeze 0,1]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "seed003_depthwise",
    summary = "Depthwise-separable net with BN: coupled dw+pw channel pruning, one-shot vs layer-by-layer, " ..
              "fine-tune vs scratch, freezing, BN folding.",
    cli.common{epochs = 3, lr = 0.02, amount = 0.5, amount_help = "fraction of channels to prune in each group"},
    {"ft_epochs", "int", 1, "fine-tuning epochs (per group when layer by layer)"},
    {"freeze", "string", "0,1", "modules kept frozen in the frozen fine-tune (comma-separated paths)"},
    {"train_size", "int", 6000, "training images to use (0 = all)"},
})

local train_set, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size or nil})
print(string.format("data: %d training, %d test images", train_set:size(), test_set:size()))
local INPUT = {1, 1, 28, 28}

local function depthwise(c, stride)
    return nn.Conv2d(c, c, 3, {stride = stride, padding = 1, groups = c, bias = false})
end
local model = nn.Sequential(
    nn.Conv2d(1, 16, 3, {stride = 2, padding = 1, bias = false}), nn.BatchNorm2d(16), nn.ReLU(), -- 0: stem, 14x14
    depthwise(16, 1), nn.BatchNorm2d(16), nn.ReLU(),                                            -- 3: dw
    nn.Conv2d(16, 32, 1, {bias = false}), nn.BatchNorm2d(32), nn.ReLU(),                        -- 6: pw
    depthwise(32, 2), nn.BatchNorm2d(32), nn.ReLU(),                                            -- 9: dw, 7x7
    nn.Conv2d(32, 64, 1, {bias = false}), nn.BatchNorm2d(64), nn.ReLU(),                        -- 12: pw
    nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(64, 10))                                      -- 17: classifier
print(pr.prune.structure.describe(pr.prune.groups(model, {input = INPUT})))

local function accuracy(m) local _, acc = pr.train.evaluate(m, test_set) return acc end
local function fit(m, epochs, o)
    o = o or {}
    return pr.train.fit(m, train_set, {epochs = epochs, lr = o.lr or opt.lr, batch = opt.batch, optimizer = o.optimizer})
end

print(string.format("\ntraining %d epoch(s), lr %g", opt.epochs, opt.lr))
fit(model, opt.epochs)
local dense_file = opt.out .. "/dense.prunert"
assert(pr.save(model, dense_file, {recipe = "seed003_depthwise"}))
local results = {{name = "dense", accuracy = accuracy(model), params = model:num_parameters()}}
print(string.format("dense: accuracy %.2f%%", 100 * results[1].accuracy))

local function prune_all(m) return pr.prune.structured(m, {criterion = "dw_coupled", amount = opt.amount, input = INPUT}) end
local ft_lr = opt.lr / 5

-- One shot: every prunable group at once, then fine-tune.
print("\n== one shot")
local one = assert(pr.load(dense_file))
prune_all(one)
local one_before = accuracy(one)
fit(one, opt.ft_epochs, {lr = ft_lr})
pr.prune.compact(one, {input = INPUT})
results[#results + 1] = {name = "one-shot + fine-tune", before = one_before, accuracy = accuracy(one),
                         params = one:num_parameters(), epochs = opt.ft_epochs}

-- Layer by layer: one group, a fine-tune, the next group.
print("\n== layer by layer")
local lbl = assert(pr.load(dense_file))
local n_groups = 0
for _, g in ipairs(pr.prune.groups(lbl, {input = INPUT})) do
    if g.prunable then
        pr.prune.structured(lbl, {criterion = "dw_coupled", amount = opt.amount, input = INPUT,
                                  layers = {g.producers[1].path}})
        fit(lbl, opt.ft_epochs, {lr = ft_lr})
        n_groups = n_groups + 1
    end
end
pr.prune.compact(lbl, {input = INPUT})
results[#results + 1] = {name = "layer-by-layer + fine-tune", accuracy = accuracy(lbl), params = lbl:num_parameters(),
                         epochs = n_groups * opt.ft_epochs}

-- Frozen: one shot again, the stem (the layer the seed found most sensitive) kept as it was.
print("\n== one shot, fine-tuned with " .. opt.freeze .. " frozen")
local frozen = assert(pr.load(dense_file))
prune_all(frozen)
local freeze = {}
for path in opt.freeze:gmatch("[^,]+") do freeze[#freeze + 1] = path end
fit(frozen, opt.ft_epochs, {optimizer = pr.prune.schedule.fine_tune_optimizer(frozen, {lr = ft_lr, freeze = freeze})})
pr.prune.compact(frozen, {input = INPUT})
results[#results + 1] = {name = "one-shot + fine-tune, frozen " .. opt.freeze, accuracy = accuracy(frozen),
                         params = frozen:num_parameters(), epochs = opt.ft_epochs}

-- From scratch: the compacted shape with fresh weights, trained as long as dense + fine-tune.
print("\n== the pruned shape trained from scratch")
local scratch = nn.from_config(one:to_config())
fit(scratch, opt.epochs + opt.ft_epochs)
results[#results + 1] = {name = "pruned shape from scratch", accuracy = accuracy(scratch),
                         params = scratch:num_parameters(), epochs = opt.epochs + opt.ft_epochs}

-- BN folding: the one-shot model without its BatchNorms, same outputs in eval mode.
local x = test_set:subset(1, math.min(256, test_set:size())).x
one:eval()
local before_fold = pr.no_grad(function() return one(x) end)
local _, folded = pr.prune.fold_bn(one)
local after_fold = pr.no_grad(function() return one(x) end)
local fold_diff = (before_fold - after_fold):abs():max():item()
print(string.format("\nfolded %d BatchNorms: max output difference %.2e", folded, fold_diff))
results[#results + 1] = {name = "one-shot, BN folded", accuracy = accuracy(one), params = one:num_parameters(), epochs = 0}
local report = pr.prune.report(one, {input = INPUT, quiet = true})
assert(pr.save(one, opt.out .. "/pruned_folded.prunert", {recipe = "seed003_depthwise", amount = opt.amount}))

-- ---- results ----
local header = {"model", "accuracy", "before fine-tune", "parameters", "extra epochs"}
local rows = {}
for i, r in ipairs(results) do
    rows[#rows + 1] = {i .. ". " .. r.name, string.format("%.2f%%", 100 * r.accuracy),
        r.before and string.format("%.2f%%", 100 * r.before) or "", r.params, r.epochs or ""}
end
print("\nper layer, one-shot pruned, compacted and folded:\n" .. pr.prune.report.text(report))
print("\n" .. cli.table(header, rows))
cli.write_file(opt.out .. "/results.json", pr.json.encode({recipe = "seed003_depthwise", options = opt,
    results = results, bn_folded = folded, fold_max_diff = fold_diff, layers = report.layers}))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local cats, accs, params = {}, {}, {}
for i, r in ipairs(results) do cats[i], accs[i], params[i] = tostring(i), r.accuracy, r.params end
report_html.write(opt.out .. "/report.html", {
    title = "Depthwise-separable net: coupled channel pruning",
    subtitle = string.format("%d training images, %.0f%% of each group's channels, %d + %d epochs", train_set:size(),
        100 * opt.amount, opt.epochs, opt.ft_epochs),
    intro = string.format("Channel scores ||dw[i]|| * ||pw[:, i]||. Folding %d BatchNorms changed the outputs by at " ..
        "most %.2e. The charts number the models as the table does.", folded, fold_diff),
    summary = {title = "Models", header = header, rows = rows},
    tables = {report_html.layer_table(report, "Per layer, one-shot pruned, compacted, BN folded")},
    images = {
        {title = "Accuracy", path = plot.bars(opt.out .. "/accuracy.svg", {title = "Test accuracy", ylabel = "accuracy",
            xlabel = "model (numbered as in the table)", categories = cats, format = "%.3f", series = {{name = "accuracy", values = accs}}})},
        {title = "Parameters", path = plot.bars(opt.out .. "/params.svg", {title = "Parameters", ylabel = "parameters",
            xlabel = "model (numbered as in the table)", categories = cats, format = "%d", series = {{name = "parameters", values = params}}})},
    },
    command = "prunert recipes/seed003_depthwise.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/results.json, results.csv, report.html", opt.out))
