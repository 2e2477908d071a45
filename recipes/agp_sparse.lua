-- agp_sparse.lua: gradual pruning to high unstructured sparsity with the automated gradual
-- pruner (Zhu and Gupta 2017): s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3, applied
-- every dt optimizer steps inside the training loop (fit's on_batch), so the network keeps
-- learning while it is thinned, fast at first and slowly near the end. Then the sparse model
-- is saved, and run with the sparse kernels pr.optimize finds fastest for each layer.
--
--   prunert recipes/agp_sparse.lua [--final 0.9] [--epochs 4 --warmup 1 --prune-epochs 2]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "agp_sparse",
    summary = "LeNet-300-100 pruned gradually (AGP) to --final unstructured sparsity during training.",
    cli.common{epochs = 4, lr = 0.05},
    {"final", "number", 0.9, "final sparsity", check = function(v) return v >= 0 and v < 1, "must be in [0, 1)" end},
    {"warmup", "int", 1, "dense epochs before pruning starts"},
    {"prune_epochs", "int", 2, "epochs over which the sparsity ramps up"},
    {"scope", "choice", "layer", "one threshold per layer or one for all", {"layer", "global"}},
    {"train_size", "int", 20000, "training images to use (0 = all)"},
})
if opt.warmup + opt.prune_epochs > opt.epochs then
    io.stderr:write("agp_sparse: --warmup + --prune-epochs must not exceed --epochs\n")
    os.exit(2)
end

local train_set, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size or nil})
print(string.format("data: %d training, %d test images", train_set:size(), test_set:size()))
local model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                            nn.Linear(100, 10))
local INPUT = {1, 784}
local NAMES = {"fc1", "fc2", "fc3"}

-- Pruning steps: every `every` steps from the end of the warm-up, for prune_epochs epochs.
local steps_per_epoch = (train_set:size() + opt.batch - 1) // opt.batch
local every = math.max(1, steps_per_epoch // 10)
local agp = pr.prune.schedule.agp{initial = 0, final = opt.final, start = opt.warmup * steps_per_epoch,
    every = every, steps = math.max(1, opt.prune_epochs * steps_per_epoch // every),
    prune = {criterion = "magnitude", scope = opt.scope}}

local losses = {}
print(string.format("\ntraining %d epoch(s): %d dense, %d pruning to %.0f%%, then fine-tuning", opt.epochs, opt.warmup,
    opt.prune_epochs, 100 * opt.final))
local history = pr.train.fit(model, train_set, {epochs = opt.epochs, lr = opt.lr, batch = opt.batch, val = test_set,
    on_batch = function(step, loss, m, o)
        losses[#losses + 1] = {step, loss}
        agp.on_batch(step, loss, m, o)
    end})

local _, accuracy = pr.train.evaluate(model, test_set)
local dense_accuracy = opt.warmup > 0 and history[opt.warmup].val_accuracy or nil
local report = pr.prune.report(model, {input = INPUT})

-- Latency of the test set with the masked dense model, and with sparse kernels if available.
local function latency(m)
    local t0 = pr.clock()
    local _, acc, n = pr.train.evaluate(m, test_set)
    return (pr.clock() - t0) * 10000 / n, acc
end
local dense_latency = latency(model)
local notes, plans = {}, nil
local sparse_latency, sparse_accuracy
if pr.optimize then
    -- Times each layer's dense and sparse kernels on a batch of the evaluation's shape and
    -- installs the fastest (a plan is kept only if it gives the dense answer).
    local example = test_set.x:narrow(1, 1, math.min(1000, test_set:size()))
    plans = pr.optimize(model, example, {print = false})
    sparse_latency, sparse_accuracy = latency(model)
    for _, r in ipairs(plans) do
        print(string.format("layer %s runs %s (%.2fx the dense kernel)", r.path, r.plan, r.speedup))
    end
else
    notes[#notes + 1] = "Sparse execution (pr.optimize) is not in this build yet: latency is the masked dense model's."
end

-- The file: a sparse encoding when the model file knows one; otherwise the masked weights are
-- stored dense and zlib squeezes their zeros.
local path = opt.out .. "/agp_sparse.prunert"
local meta = {recipe = "agp_sparse", schedule = "agp", final = opt.final, sparsity = report.sparsity}
if not pcall(pr.save, model, path, meta, {encoding = "sparse"}) then assert(pr.save(model, path, meta)) end
local raw, stored, encodings = 0, 0, {}
for _, c in ipairs(assert(pr.io.model_file_info(path))) do
    raw, stored = raw + c.raw_bytes, stored + c.stored_bytes
    if c.encoding then encodings[c.encoding] = true end
end
if not encodings.sparse then
    notes[#notes + 1] = "The model file has no sparse encoding yet: weights are stored dense (zeros compressed by zlib)."
end
for _, n in ipairs(notes) do print("note: " .. n) end

-- ---- results ----
local human = pr.model.human_bytes
local header = {"", "value"}
local rows = {
    {"sparsity (weights and biases)", string.format("%.2f%%", 100 * report.sparsity)},
    {"accuracy, dense (end of warm-up)", dense_accuracy and string.format("%.2f%%", 100 * dense_accuracy) or ""},
    {"accuracy, pruned", string.format("%.2f%%", 100 * accuracy)},
    {"non-zero parameters", string.format("%d of %d", report.nonzero, report.params)},
    {"effective FLOPs per image", string.format("%s of %s", pr.prune.report.fmt_count(report.effective_flops),
        pr.prune.report.fmt_count(report.flops))},
    {"latency per 10k images, masked dense", string.format("%.3f s", dense_latency)},
    {"latency per 10k images, sparse kernels", sparse_latency and string.format("%.3f s", sparse_latency) or "n/a"},
    {"accuracy with sparse kernels", sparse_accuracy and string.format("%.2f%%", 100 * sparse_accuracy) or "n/a"},
    {"file size (raw tensors -> stored)", string.format("%s -> %s", human(raw), human(stored))},
}
print("\n" .. cli.table(header, rows))
cli.write_file(opt.out .. "/results.json", pr.json.encode({recipe = "agp_sparse", options = opt, accuracy = accuracy,
    dense_accuracy = dense_accuracy, sparsity = report.sparsity, layers = report.layers, schedule = agp.history,
    history = history, latency_per_10k = dense_latency, sparse_latency_per_10k = sparse_latency,
    sparse_accuracy = sparse_accuracy, plans = plans, file_raw_bytes = raw, file_stored_bytes = stored, notes = notes}))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local steps, target, actual = {}, {}, {}
for i, h in ipairs(agp.history) do steps[i], target[i], actual[i] = h.step, h.target, h.sparsity end
local ls, lv = {}, {}
for i, p in ipairs(losses) do ls[i], lv[i] = p[1], p[2] end
local ep, acc = {}, {}
for i, h in ipairs(history) do ep[i], acc[i] = h.epoch, h.val_accuracy end
local cats, sparsity = {}, {}
for i, l in ipairs(report.layers) do cats[i], sparsity[i] = NAMES[i] or l.name, l.sparsity end
local images = {
    {title = "Sparsity schedule", path = plot.lines(opt.out .. "/schedule.svg", {title = "AGP sparsity schedule",
        xlabel = "step", ylabel = "sparsity", ymin = 0, ymax = 1,
        series = {{name = "target", x = steps, y = target}, {name = "reached", x = steps, y = actual}}})},
    {title = "Training loss", path = plot.lines(opt.out .. "/loss.svg", {title = "Training loss", xlabel = "step",
        ylabel = "loss", ymin = 0, series = {{name = "loss", x = ls, y = lv}}})},
    {title = "Test accuracy per epoch", path = plot.lines(opt.out .. "/accuracy.svg", {title = "Test accuracy per epoch",
        xlabel = "epoch", ylabel = "accuracy", series = {{name = "test accuracy", x = ep, y = acc}}})},
    {title = "Sparsity per layer", path = plot.bars(opt.out .. "/sparsity.svg", {title = "Sparsity per layer",
        ylabel = "fraction pruned", categories = cats, format = "%.3f", ymax = 1, series = {{name = "sparsity", values = sparsity}}})},
    {title = "fc2 mask", path = plot.mask(opt.out .. "/mask_fc2.png", model:children()[4]:own_params()[1][2])},
}
report_html.write(opt.out .. "/report.html", {
    title = "AGP gradual pruning to " .. string.format("%.0f%%", 100 * opt.final) .. " sparsity",
    subtitle = string.format("LeNet-300-100, %d training images, %d epochs, %s scope", train_set:size(), opt.epochs, opt.scope),
    intro = string.format("Pruned every %d steps from step %d over %d epochs, magnitude criterion.", every,
        opt.warmup * steps_per_epoch, opt.prune_epochs),
    summary = {title = "Result", header = header, rows = rows},
    tables = {report_html.layer_table(report), plans and {title = "Execution plans (pr.optimize)",
        header = {"layer", "weight", "sparsity", "plan", "dense ms", "plan ms", "speedup"},
        rows = (function()
            local r = {}
            for i, p in ipairs(plans) do
                r[i] = {NAMES[i] or p.path, "[" .. table.concat(p.weight_shape, ",") .. "]",
                    string.format("%.1f%%", 100 * p.sparsity), p.plan, p.dense_ms, p.plan_ms,
                    string.format("%.2fx", p.speedup)}
            end
            return r
        end)()} or nil},
    images = images, notes = notes,
    command = "prunert recipes/agp_sparse.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/agp_sparse.prunert, results.json, results.csv, report.html", opt.out))
