-- seed002_taylor.lua: an iterative train-prune loop driven by gradients (seed 002): every round
-- scores each weight by its first-order Taylor estimate |w * dL/dw| (gradients measured on a
-- few training batches), prunes the lowest, and trains on with the masks kept. Run twice, with
-- cross-entropy and with mean squared error against one-hot targets, and compared.
--
--   prunert recipes/seed002_taylor.lua [--rounds 3] [--final 0.8] [--granularity element]
local pr = require "prunert"
local cli = require "prunert.cli"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "seed002_taylor",
    summary = "Iterative Taylor pruning of an MLP, trained with cross-entropy and with MSE on one-hot targets.",
    cli.common{epochs = 2, lr = 0.05},
    {"mse_lr", "number", 0.2, "learning rate with the MSE loss (its gradients are smaller)"},
    {"rounds", "int", 3, "prune/train rounds", check = function(v) return v > 0, "must be positive" end},
    {"final", "number", 0.8, "sparsity after the last round",
     check = function(v) return v >= 0 and v < 1, "must be in [0, 1)" end},
    {"round_epochs", "int", 1, "training epochs after each pruning round"},
    {"granularity", "choice", "element", "what a score ranks", {"element", "neuron"}},
    {"train_size", "int", 6000, "training images to use (0 = all)"},
})

local train_set, test_set = cli.datasets(opt, {train_limit = opt.train_size > 0 and opt.train_size or nil})
print(string.format("data: %d training, %d test images", train_set:size(), test_set:size()))

-- MSE wants a target vector per image: row y of the 10 x 10 identity is the one-hot code of class y.
local one_hot_set = pr.data.dataset(train_set.x, pr.eye(10):index_select(1, train_set.y))

local function mlp()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))
end

-- Accuracy is the argmax against the labels, whatever loss trained the network.
local function accuracy(m) local _, acc = pr.train.evaluate(m, test_set) return acc end

local runs = {
    {name = "cross-entropy", loss = "cross_entropy", data = train_set, lr = opt.lr},
    {name = "MSE", loss = "mse", data = one_hot_set, lr = opt.mse_lr},
}
for _, run in ipairs(runs) do
    pr.seed(opt.seed)
    local model = mlp()
    print(string.format("\n== %s: training %d epoch(s), lr %g", run.name, opt.epochs, run.lr))
    pr.train.fit(model, run.data, {epochs = opt.epochs, lr = run.lr, batch = opt.batch, loss = run.loss})
    run.curve = {{round = 0, sparsity = 0, accuracy = accuracy(model)}}
    print(string.format("dense: accuracy %.2f%%", 100 * run.curve[1].accuracy))
    -- Workaround: prune.apply's gradient gathering fails to restore gradients left over from
    -- training (prune/init.lua gather_gradients), so start every round without them.
    model:zero_grad()
    pr.prune.schedule.iterative(model, run.data, {
        rounds = opt.rounds, final = opt.final,
        prune = {criterion = "taylor", data = run.data, loss = run.loss, batches = 8,
                 granularity = opt.granularity, exclude = opt.granularity == "neuron" and {"5"} or nil},
        fine_tune = {epochs = opt.round_epochs, lr = run.lr, loss = run.loss, batch = opt.batch},
        on_round = function(rec, m)
            m:zero_grad()
            local acc = accuracy(m)
            run.curve[#run.curve + 1] = {round = rec.round, sparsity = rec.sparsity, accuracy = acc}
            print(string.format("round %d: sparsity %.1f%%, accuracy %.2f%%", rec.round, 100 * rec.sparsity, 100 * acc))
        end,
    })
    run.report = pr.prune.report(model, {input = {1, 1, 28, 28}, quiet = true})
    run.model = model
    assert(pr.save(model, opt.out .. "/" .. run.loss .. ".prunert", {recipe = "seed002_taylor", loss = run.loss}))
end

-- ---- results ----
local header = {"round", "target"}
for _, run in ipairs(runs) do
    header[#header + 1] = run.name .. " sparsity"
    header[#header + 1] = run.name .. " accuracy"
end
local rows = {}
for r = 0, opt.rounds do
    local row = {r, string.format("%.1f%%", 100 * (1 - (1 - opt.final) ^ (r / opt.rounds)))}
    for _, run in ipairs(runs) do
        local c = run.curve[r + 1]
        row[#row + 1] = string.format("%.1f%%", 100 * c.sparsity)
        row[#row + 1] = string.format("%.2f%%", 100 * c.accuracy)
    end
    rows[#rows + 1] = row
end
print("\nper layer, cross-entropy run:\n" .. pr.prune.report.text(runs[1].report))
print("\n" .. cli.table(header, rows))

local json = {recipe = "seed002_taylor", options = opt, runs = {}}
for i, run in ipairs(runs) do json.runs[i] = {name = run.name, loss = run.loss, rounds = run.curve, layers = run.report.layers} end
cli.write_file(opt.out .. "/results.json", pr.json.encode(json))
cli.write_file(opt.out .. "/results.csv", cli.csv(header, rows))

local series = {}
for i, run in ipairs(runs) do
    local xs, ys = {}, {}
    for j, c in ipairs(run.curve) do xs[j], ys[j] = c.sparsity, c.accuracy end
    series[i] = {name = run.name, x = xs, y = ys}
end
local images = {{title = "Accuracy vs sparsity", path = plot.lines(opt.out .. "/accuracy.svg", {
    title = "Accuracy after each round", xlabel = "sparsity", ylabel = "test accuracy", xmin = 0, xmax = 1,
    ymin = 0, series = series})}}
for _, run in ipairs(runs) do
    images[#images + 1] = {title = "Output layer mask, " .. run.name,
        path = plot.mask(opt.out .. "/mask_out_" .. run.loss .. ".png", run.model:children()[6]:own_params()[1][2])}
end
report_html.write(opt.out .. "/report.html", {
    title = "Iterative Taylor pruning: cross-entropy vs MSE",
    subtitle = string.format("MLP 784-300-100-10, %d training images, %d rounds to %.0f%%", train_set:size(),
        opt.rounds, 100 * opt.final),
    intro = "Each round prunes the weights with the smallest |w * dL/dw| (" .. opt.granularity ..
        " granularity) and trains on with the masks kept; every round removes the same fraction of what is left.",
    summary = {title = "Rounds", header = header, rows = rows},
    tables = {report_html.layer_table(runs[1].report, "Per layer, cross-entropy"),
              report_html.layer_table(runs[2].report, "Per layer, MSE")},
    images = images,
    command = "prunert recipes/seed002_taylor.lua " .. table.concat(arg, " "),
})
print(string.format("\nwrote %s/results.json, results.csv, report.html and the models", opt.out))
