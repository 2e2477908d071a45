-- lenet_l1.lua: LeNet-5 on Fashion-MNIST, conv filters pruned by L1 norm (Li et al. 2017,
-- "Pruning Filters for Efficient ConvNets"), fine-tuned with the masks kept, then compacted
-- into a smaller dense network. Prints one table, dense vs pruned: accuracy, parameters,
-- FLOPs, latency per 10k test images and file size; writes the models, results.json,
-- results.csv, plots and report.html to --out.
--
--   prunert recipes/lenet_l1.lua                        defaults: about two minutes on 2 cores
--   prunert recipes/lenet_l1.lua --amounts 0.6,0.8      conv1, conv2 amounts
--   prunert recipes/lenet_l1.lua --sensitivity          amounts from a sensitivity analysis
--   prunert recipes/lenet_l1.lua --data ~/mnist --epochs 5 --train-size 0
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "lenet_l1",
    summary = "LeNet-5: train, prune conv filters by L1 norm, fine-tune, compact, compare.",
    cli.common{epochs = 2, lr = 0.03, amounts = {0.5, 0.7},
               amounts_help = "fraction of filters to prune in conv1, conv2"},
    {"ft_epochs", "int", 1, "fine-tuning epochs after pruning"},
    {"ft_lr", "number", 0.01, "fine-tuning learning rate"},
    {"train_size", "int", 20000, "training images to use (0 = all 60000)"},
    {"sensitivity", "flag", false, "choose the amounts by a sensitivity analysis instead"},
    {"budget", "number", 0.02, "accuracy drop allowed per layer with --sensitivity"},
})
if #opt.amounts ~= 2 then
    io.stderr:write("lenet_l1: --amounts needs two values (conv1, conv2)\n")
    os.exit(2)
end

-- ---- data and model ----
-- The first --train-size training images train the model; the 2000 after them are held out
-- for the sensitivity analysis.
local HELD_OUT = 2000
local all_train, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size + HELD_OUT or nil})
local held = math.min(HELD_OUT, all_train:size() // 5)
local train_set = all_train:subset(1, all_train:size() - held)
local val_set = all_train:subset(all_train:size() - held + 1)
print(string.format("data: %d training, %d held-out, %d test images (%s)", train_set:size(), val_set:size(),
    test_set:size(), opt.data or "Fashion-MNIST"))

-- Caffe's LeNet-5: 28 -> conv 5x5 -> 24 -> pool -> 12 -> conv 5x5 -> 8 -> pool -> 4; 50 x 4 x 4 = 800.
local model = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),      -- "0": conv1
    nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),     -- "3": conv2
    nn.Flatten(),
    nn.Linear(800, 500), nn.ReLU(),
    nn.Linear(500, 10))
local INPUT = {1, 1, 28, 28}
local CONVS = {"0", "3"}
local NAMES = {["0.weight"] = "conv1", ["3.weight"] = "conv2", ["7.weight"] = "fc1", ["9.weight"] = "fc2"}

-- The loss of every step, for the training-curve plot.
local function loss_log(list)
    return function(step, loss) list[#list + 1] = {step, loss} end
end

-- Accuracy and the wall time of evaluating the whole test set, scaled to 10k images.
local function measure(m)
    local t0 = pr.clock()
    local _, acc, n = pr.train.evaluate(m, test_set)
    return acc, (pr.clock() - t0) * 10000 / n
end

-- ---- train ----
print(string.format("\ntraining %d epoch(s), lr %g", opt.epochs, opt.lr))
local train_curve = {}
local history = pr.train.fit(model, train_set, {epochs = opt.epochs, lr = opt.lr, batch = opt.batch,
                                                on_batch = loss_log(train_curve)})
local dense = {report = pr.prune.report(model, {input = INPUT, quiet = true})}
dense.accuracy, dense.latency = measure(model)
dense.file = opt.out .. "/dense.prunert"
assert(pr.save(model, dense.file, {recipe = "lenet_l1", stage = "dense"}))
dense.bytes = cli.file_size(dense.file)
print(string.format("dense: accuracy %.2f%%", 100 * dense.accuracy))

-- ---- choose amounts ----
local amounts = {["0"] = opt.amounts[1], ["3"] = opt.amounts[2]}
local sens
if opt.sensitivity then
    print(string.format("\nsensitivity analysis on %d held-out images", val_set:size()))
    sens = pr.prune.sensitivity(model, val_set, {criterion = "l1", granularity = "filter", layers = CONVS,
        amounts = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}})
    local chosen = pr.prune.sensitivity.amounts(sens, {budget = opt.budget})
    amounts = {["0"] = chosen["0.weight"], ["3"] = chosen["3.weight"]}
end
print(string.format("\npruning filters by L1 norm: conv1 %.0f%%, conv2 %.0f%%", 100 * amounts["0"], 100 * amounts["3"]))

-- ---- prune, fine-tune, compact ----
pr.prune.apply(model, {criterion = "l1", granularity = "filter", layers = CONVS, amount = amounts})
local masked_report = pr.prune.report(model, {input = INPUT, quiet = true})
local pruned_accuracy = measure(model)
print(string.format("pruned, before fine-tuning: accuracy %.2f%%", 100 * pruned_accuracy))
local mask_images = {}
for _, t in ipairs(pr.prune.targets(model, {layers = CONVS})) do
    mask_images[#mask_images + 1] = {title = NAMES[t.name] .. " mask (one row per filter)",
        path = plot.mask(opt.out .. "/mask_" .. NAMES[t.name] .. ".png", t.weight)}
end

print(string.format("\nfine-tuning %d epoch(s), lr %g, masks kept", opt.ft_epochs, opt.ft_lr))
local ft_curve = {}
local ft_history = pr.train.fit(model, train_set, {epochs = opt.ft_epochs, lr = opt.ft_lr, batch = opt.batch,
                                                   on_batch = loss_log(ft_curve)})
local _, summary = pr.prune.compact(model, {input = INPUT})
for _, g in ipairs(summary.groups) do
    print(string.format("compacted %s: %d -> %d channels", NAMES[g.name .. ".weight"] or g.name, g.before, g.after))
end

local pruned = {report = pr.prune.report(model, {input = INPUT, quiet = true})}
pruned.accuracy, pruned.latency = measure(model)
pruned.file = opt.out .. "/pruned.prunert"
assert(pr.save(model, pruned.file, {recipe = "lenet_l1", stage = "pruned", criterion = "l1",
                                     granularity = "filter", amounts = amounts}))
pruned.bytes = cli.file_size(pruned.file)

-- ---- the table ----
local function pct(v) return string.format("%.2f%%", 100 * v) end
local function change(a, b) return string.format("%+.1f%%", 100 * (b - a) / a) end
local fmt = pr.prune.report.fmt_count
local header = {"", "dense", "pruned", "change"}
local rows = {
    {"accuracy", pct(dense.accuracy), pct(pruned.accuracy),
     string.format("%+.2f pt", 100 * (pruned.accuracy - dense.accuracy))},
    {"accuracy before fine-tuning", "", pct(pruned_accuracy), ""},
    {"parameters", dense.report.params, pruned.report.params, change(dense.report.params, pruned.report.params)},
    {"FLOPs per image", fmt(dense.report.flops), fmt(pruned.report.flops), change(dense.report.flops, pruned.report.flops)},
    {"latency per 10k images", string.format("%.2f s", dense.latency), string.format("%.2f s", pruned.latency),
     change(dense.latency, pruned.latency)},
    {"file size", pr.model.human_bytes(dense.bytes), pr.model.human_bytes(pruned.bytes), change(dense.bytes, pruned.bytes)},
}
print("\nper layer, after pruning and compaction:")
print(pr.prune.report.text(pruned.report))
print("\n" .. cli.table(header, rows))

-- ---- files ----
local results = {
    recipe = "lenet_l1", options = opt, amounts = amounts,
    dense = {accuracy = dense.accuracy, params = dense.report.params, flops = dense.report.flops,
             latency_per_10k = dense.latency, file_bytes = dense.bytes},
    pruned = {accuracy = pruned.accuracy, accuracy_before_fine_tune = pruned_accuracy, params = pruned.report.params,
              flops = pruned.report.flops, latency_per_10k = pruned.latency, file_bytes = pruned.bytes},
    layers = pruned.report.layers, masked_layers = masked_report.layers,
    history = history, fine_tune_history = ft_history, sensitivity = sens,
}
cli.write_file(opt.out .. "/results.json", pr.json.encode(results))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local images = {}
images[#images + 1] = {title = "Test accuracy", path = plot.bars(opt.out .. "/accuracy.svg", {
    title = "Test accuracy", ylabel = "accuracy", categories = {"dense", "pruned", "fine-tuned"}, format = "%.3f",
    series = {{name = "accuracy", values = {dense.accuracy, pruned_accuracy, pruned.accuracy}}}})}
local cats, dense_params, pruned_params, sparsity = {}, {}, {}, {}
for i, l in ipairs(dense.report.layers) do
    cats[i] = NAMES[l.name .. ".weight"] or l.name
    dense_params[i] = l.params
    pruned_params[i] = pruned.report.layers[i].params
    sparsity[i] = masked_report.layers[i].sparsity
end
images[#images + 1] = {title = "Parameters per layer", path = plot.bars(opt.out .. "/params.svg", {
    title = "Parameters per layer", ylabel = "parameters", categories = cats, format = "%d",
    series = {{name = "dense", values = dense_params}, {name = "pruned + compacted", values = pruned_params}}})}
images[#images + 1] = {title = "Sparsity per layer (masked, before compaction)", path = plot.bars(
    opt.out .. "/sparsity.svg", {title = "Sparsity per layer", ylabel = "fraction of zero weights", categories = cats,
    format = "%.2f", ymax = 1, series = {{name = "sparsity", values = sparsity}}})}
local function curve(name, list, offset)
    local xs, ys = {}, {}
    for i, p in ipairs(list) do xs[i], ys[i] = p[1] + offset, p[2] end
    return {name = name, x = xs, y = ys}
end
local steps = history[#history] and history[#history].steps or 0
images[#images + 1] = {title = "Training loss", path = plot.lines(opt.out .. "/loss.svg", {
    title = "Training loss", xlabel = "step", ylabel = "loss", ymin = 0,
    series = {curve("training", train_curve, 0), curve("fine-tuning", ft_curve, steps)}})}
if sens then
    local series = {}
    for _, l in ipairs(sens.layers) do
        local xs, ys = {}, {}
        for i, r in ipairs(l.results) do xs[i], ys[i] = r.amount, r.accuracy end
        series[#series + 1] = {name = NAMES[l.name], x = xs, y = ys}
    end
    images[#images + 1] = {title = "Sensitivity", path = plot.lines(opt.out .. "/sensitivity.svg", {
        title = "Sensitivity (accuracy vs filters pruned)", xlabel = "fraction of filters pruned",
        ylabel = "accuracy", xmin = 0, xmax = 1, ymin = 0, series = series})}
end
for _, m in ipairs(mask_images) do images[#images + 1] = m end

local layer_table = report_html.layer_table(masked_report, "Per layer, pruned (masked, before compaction)")
local compact_table = report_html.layer_table(pruned.report, "Per layer, after fine-tuning and compaction")
report_html.write(opt.out .. "/report.html", {
    title = "LeNet-5: L1-norm filter pruning",
    subtitle = string.format("%s, %d training images, %d + %d epochs", opt.data or "Fashion-MNIST",
        train_set:size(), opt.epochs, opt.ft_epochs),
    intro = string.format("Filters of conv1 and conv2 with the smallest L1 norms were removed (%.0f%% and %.0f%%), " ..
        "the network was fine-tuned with the masks kept and compacted into a smaller dense network.",
        100 * amounts["0"], 100 * amounts["3"]),
    summary = {title = "Dense vs pruned", header = header, rows = rows},
    tables = {layer_table, compact_table},
    images = images,
    command = "prunert recipes/lenet_l1.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/{dense,pruned}.prunert, results.json, results.csv, report.html", opt.out))
