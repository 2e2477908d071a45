-- compress.lua: how small does a pruned, quantised LeNet-5 file get, and what does it cost in
-- accuracy? (Deep Compression's LeNet-5 experiment, Han et al. 2016: pruning + quantisation
-- gave a 40x smaller file at no loss.)
--
-- Trains LeNet-5 on Fashion-MNIST (--epochs, on --train-size images), saves it dense (the
-- float32 reference file), prunes it to --amount (0.92) globally by magnitude, fine-tunes with
-- the masks (--ft-epochs), removes the masks (a deployment file: the zeros are the pruning),
-- and saves it with each encoding. Every file is loaded back and evaluated on the 10k test
-- images; the "sparse" file is exact, so its accuracy is the unquantised pruned model's.
--
--   build/bin/prunert bench/compress.lua                  # 2 + 1 epochs on 20k images
--   build/bin/prunert bench/compress.lua --epochs 3 --train-size 0
--
-- Prints one row per file (bytes, ratio to the dense float32 file, accuracy, change in points
-- against the unquantised pruned model), then `name value` lines: dense_bytes, best_bytes,
-- best_ratio, best_drop_points, target_ratio 40, target_drop_points 0.3. Exits 1 when the
-- best quantised file misses either target.
local pr = require "prunert"
local cli = require "prunert.cli"
local optimize = require "prunert.optimize"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "compress",
    summary = "LeNet-5 at 92% sparsity saved sparse / quant8 / kmeans4: file size and accuracy.",
    {"epochs", "int", 2, "training epochs"},
    {"ft_epochs", "int", 1, "fine-tuning epochs after pruning"},
    {"train_size", "int", 20000, "training images (0 = all 60000)"},
    {"amount", "number", 0.92, "global magnitude pruning amount"},
    {"lr", "number", 0.05, "learning rate (fine-tuning uses a fifth of it)"},
    {"out", "string", os.getenv("TMPDIR") or "/tmp", "directory for the model files"},
    {"seed", "int", 1, "random seed"},
})

local function size(path)
    local f = assert(io.open(path, "rb"))
    local n = f:seek("end")
    f:close()
    return n
end

pr.seed(opt.seed)
local train = pr.data.fashion_mnist{split = "train", limit = opt.train_size > 0 and opt.train_size or nil}
local test = pr.data.fashion_mnist{split = "test"}
local model = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
local t0 = pr.clock()
pr.train.fit(model, train, {epochs = opt.epochs, batch = 64, lr = opt.lr})
local function accuracy(m) return select(2, pr.train.evaluate(m, test)) end
local dense_acc = accuracy(model)
local base = string.format("%s/prunert_compress_%d", opt.out, os.time())
local files = {}
local function save(tag, m, enc)
    local path = base .. "_" .. tag .. ".prunert"
    files[#files + 1] = path
    assert(pr.save(m, path, {bench = "compress", encoding = tag},
                   {encodings = optimize.encodings(m:state_dict(), enc), level = 9}))
    return path
end
local dense_path = save("dense", model, "dense")
local dense_bytes = size(dense_path)

pr.prune.apply(model, {scope = "global", amount = opt.amount})
if opt.ft_epochs > 0 then
    pr.train.fit(model, train, {epochs = opt.ft_epochs, batch = 64, lr = opt.lr / 5})
end
local masked_bytes = size(save("pruned_dense_masks", model, "dense"))
pr.prune.remove_masks(model)
local stats = pr.prune.summary(model)
print(string.format("trained %.0f s; dense accuracy %.4f; sparsity %.2f%% of %d weights",
    pr.clock() - t0, dense_acc, 100 * stats.sparsity, stats.total))

-- Weights quantised by the named scheme; biases (580 values) by quant8 in the k-means rows.
local kinds = {
    {"pruned_dense", "dense"},
    {"sparse", "sparse"},
    {"quant8", "quant8"},
    {"kmeans4", function(name) return name:match("weight$") and "kmeans4" or "quant8" end},
}
print(string.format("\n%-20s %10s %8s %9s %8s", "file", "bytes", "ratio", "accuracy", "points"))
print(string.format("%-20s %10d %7.1fx %9.4f %8s", "dense (unpruned)", dense_bytes, 1, dense_acc, ""))
print(string.format("%-20s %10d %7.1fx %9s %8s", "pruned+masks dense", masked_bytes,
    dense_bytes / masked_bytes, "", ""))
local ref, best
for _, k in ipairs(kinds) do
    local path = save(k[1], model, k[2])
    local m = assert(pr.load(path))
    local acc = accuracy(m)
    if k[1] == "sparse" then ref = acc end
    local bytes = size(path)
    local points = ref and 100 * (acc - ref)
    print(string.format("%-20s %10d %7.1fx %9.4f %8s", k[1], bytes, dense_bytes / bytes, acc,
        points and string.format("%+.2f", points) or ""))
    if (k[1] == "quant8" or k[1] == "kmeans4") and (not best or bytes < best.bytes) then
        best = {name = k[1], bytes = bytes, points = points}
    end
end
for _, p in ipairs(files) do os.remove(p) end

print("")
print(string.format("dense_bytes %d", dense_bytes))
print(string.format("best_encoding %s", best.name))
print(string.format("best_bytes %d", best.bytes))
print(string.format("best_ratio %.1f", dense_bytes / best.bytes))
print(string.format("best_drop_points %.2f", -best.points))
print("target_ratio 40")
print("target_drop_points 0.3")
if dense_bytes / best.bytes < 40 or -best.points > 0.3 then os.exit(1) end
