-- sensitivity.lua: how much each layer of LeNet-5 can lose on its own. Every layer is pruned
-- alone at 10%..90% (the others untouched), the network is evaluated on held-out images and
-- restored; the curves show which layers are fragile. The amounts the analysis suggests
-- (the largest whose accuracy drop stays within --budget) are then applied together, and the
-- network is fine-tuned.
--
--   prunert recipes/sensitivity.lua [--budget 0.01] [--granularity element|filter]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "sensitivity",
    summary = "Per-layer sensitivity analysis of LeNet-5, then pruning by the amounts it suggests.",
    cli.common{epochs = 2, lr = 0.03, amounts = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9},
               amounts_help = "amounts to try on each layer"},
    {"budget", "number", 0.01, "accuracy drop allowed per layer"},
    {"granularity", "choice", "element", "what is pruned", {"element", "filter"}},
    {"ft_epochs", "int", 1, "fine-tuning epochs after pruning"},
    {"train_size", "int", 8000, "training images to use (0 = all); 2000 more are held out"},
})

local HELD_OUT = 2000
local all_train, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size + HELD_OUT or nil})
local held = math.min(HELD_OUT, all_train:size() // 5)
local train_set = all_train:subset(1, all_train:size() - held)
local val_set = all_train:subset(all_train:size() - held + 1)
print(string.format("data: %d training, %d held-out, %d test images", train_set:size(), val_set:size(), test_set:size()))

local model = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
local INPUT = {1, 1, 28, 28}
local NAMES = {["0.weight"] = "conv1", ["3.weight"] = "conv2", ["7.weight"] = "fc1", ["9.weight"] = "fc2"}
-- Filters and neurons: the output layer's neurons are the classes, so it is left out then.
local exclude = opt.granularity == "filter" and {"9"} or nil

print(string.format("\ntraining %d epoch(s), lr %g", opt.epochs, opt.lr))
pr.train.fit(model, train_set, {epochs = opt.epochs, lr = opt.lr, batch = opt.batch})
local _, dense_acc = pr.train.evaluate(model, test_set)

print(string.format("\nsensitivity (%s, magnitude) on %d held-out images", opt.granularity, val_set:size()))
local sens = pr.prune.sensitivity(model, val_set, {amounts = opt.amounts, criterion = "l1",
    granularity = opt.granularity, exclude = exclude,
    csv = opt.out .. "/sensitivity.csv", json = opt.out .. "/sensitivity.json",
    on_layer = function(entry)
        local accs = {}
        for i, r in ipairs(entry.results) do accs[i] = string.format("%.0f%%:%.3f", 100 * r.amount, r.accuracy) end
        print(string.format("%-6s %s", NAMES[entry.name], table.concat(accs, " ")))
    end})
local amounts = pr.prune.sensitivity.amounts(sens, {budget = opt.budget})

pr.prune.apply(model, {criterion = "l1", granularity = opt.granularity, amount = amounts, exclude = exclude})
local _, pruned_acc = pr.train.evaluate(model, test_set)
print(string.format("\npruned by the suggested amounts: test accuracy %.2f%%; fine-tuning", 100 * pruned_acc))
pr.train.fit(model, train_set, {epochs = opt.ft_epochs, lr = opt.lr / 2, batch = opt.batch})
local _, ft_acc = pr.train.evaluate(model, test_set)
local report = pr.prune.report(model, {input = INPUT, quiet = true})
assert(pr.save(model, opt.out .. "/pruned.prunert", {recipe = "sensitivity", amounts = amounts}))

-- ---- results ----
local header = {"layer", "suggested amount", "sparsity", "accuracy at that amount (alone)"}
local rows = {}
for _, l in ipairs(sens.layers) do
    local at = ""
    for _, r in ipairs(l.results) do
        if r.amount == amounts[l.name] then at = string.format("%.2f%%", 100 * r.accuracy) end
    end
    local sparsity = ""
    for _, rl in ipairs(report.layers) do
        if rl.name .. ".weight" == l.name then sparsity = string.format("%.1f%%", 100 * rl.sparsity) end
    end
    rows[#rows + 1] = {NAMES[l.name] or l.name, string.format("%.2f", amounts[l.name]), sparsity, at}
end
local summary = {
    {"dense", string.format("%.2f%%", 100 * dense_acc), report.params},
    {"pruned by the suggested amounts", string.format("%.2f%%", 100 * pruned_acc), report.nonzero},
    {"... and fine-tuned", string.format("%.2f%%", 100 * ft_acc), report.nonzero},
}
print("\n" .. cli.table(header, rows))
print("\n" .. cli.table({"model", "test accuracy", "non-zero params"}, summary))
cli.write_file(opt.out .. "/results.json", pr.json.encode({recipe = "sensitivity", options = opt, sensitivity = sens,
    amounts = amounts, dense_accuracy = dense_acc, pruned_accuracy = pruned_acc, fine_tuned_accuracy = ft_acc,
    layers = report.layers}))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local series = {}
for _, l in ipairs(sens.layers) do
    local xs, ys = {0}, {sens.baseline.accuracy}
    for _, r in ipairs(l.results) do xs[#xs + 1], ys[#ys + 1] = r.amount, r.accuracy end
    series[#series + 1] = {name = NAMES[l.name] or l.name, x = xs, y = ys}
end
local cats, sparsity = {}, {}
for i, l in ipairs(report.layers) do cats[i], sparsity[i] = NAMES[l.name .. ".weight"] or l.name, l.sparsity end
report_html.write(opt.out .. "/report.html", {
    title = "LeNet-5 sensitivity analysis",
    subtitle = string.format("%s granularity, L1 magnitude, budget %.1f points", opt.granularity, 100 * opt.budget),
    intro = "Each curve prunes one layer alone and measures held-out accuracy; the others are untouched. " ..
        "The suggested amount per layer is the largest whose drop stays within the budget.",
    summary = {title = "Accuracy", header = {"model", "test accuracy", "non-zero params"}, rows = summary},
    tables = {{title = "Suggested amounts", header = header, rows = rows},
              report_html.layer_table(report, "Per layer, pruned")},
    images = {
        {title = "Sensitivity", path = plot.lines(opt.out .. "/sensitivity.svg", {title = "Accuracy vs amount, one layer at a time",
            xlabel = "amount pruned", ylabel = "held-out accuracy", xmin = 0, xmax = 1, ymin = 0, series = series})},
        {title = "Sparsity per layer", path = plot.bars(opt.out .. "/sparsity.svg", {title = "Sparsity per layer",
            ylabel = "fraction pruned", categories = cats, format = "%.2f", ymax = 1,
            series = {{name = "sparsity", values = sparsity}}})},
    },
    command = "prunert recipes/sensitivity.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/results.json, results.csv, sensitivity.csv, report.html", opt.out))
