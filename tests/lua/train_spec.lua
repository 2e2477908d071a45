-- Data sets, batches, the training loop and model files (issue: real data, training, files).
local pr = require "prunert"
local nn = pr.nn

local tmpdir = os.getenv("TMPDIR") or "/tmp"
local function tmpname(suffix)
    return string.format("%s/prunert_spec_%d_%d%s", tmpdir, os.time(), math.random(1, 1e9), suffix)
end

describe("Fashion-MNIST", function()
    it("reads a slice as N x 1 x 28 x 28 in [0,1] with labels 1..10", function()
        local ds = pr.data.fashion_mnist{split = "test", limit = 50}
        assert.are.equal(50, ds:size())
        assert.are.same({50, 1, 28, 28}, ds.x:shape())
        assert.is_true(ds.x:min():item() >= 0 and ds.x:max():item() <= 1)
        assert.are.equal("int64", ds.y:dtype())
        -- The test set starts with an ankle boot (class 9 counting from 0), then a pullover.
        assert.are.same({10, 3, 2, 2, 7}, ds.y:narrow(1, 1, 5):totable())
    end)

    it("says which package to install when the files are missing", function()
        local ok, err = pcall(pr.data.fashion_mnist, {dir = "/nonexistent"})
        assert.is_false(ok)
        assert.truthy(err:find("apt-get install dataset-fashion-mnist", 1, true))
        local ok2, err2 = pcall(pr.data.mnist, {dir = "/nonexistent"})
        assert.is_false(ok2)
        assert.truthy(err2:find("train-images-idx3-ubyte", 1, true))
    end)
end)

describe("CSV", function()
    it("reads numeric rows with a header and a label column", function()
        local path = tmpname(".csv")
        local f = io.open(path, "w")
        f:write("a,b,label\n1.5,2,1\n-3,4e-1,2\r\n0,0,3\n")
        f:close()
        local ds = pr.data.csv(path, {label = "last"})
        assert.are.same({3, 2}, ds.x:shape())
        assert.are.same({1, 2, 3}, ds.y:totable())
        assert.is_true(math.abs(ds.x:get(2, 2) - 0.4) < 1e-6)
        assert.are.same({"a", "b", "label"}, ds.info.header)
        f = io.open(path, "w")
        f:write("1,2\n3,x\n")
        f:close()
        local ok, err = pcall(pr.data.csv, path)
        assert.is_false(ok)
        assert.truthy(err:find(":2 field 2 is not a number: 'x'", 1, true))
        f = io.open(path, "w")
        f:write("1,2\n3\n")
        f:close()
        ok, err = pcall(pr.data.csv, path)
        assert.truthy(err:find("has 1 fields, expected 2", 1, true))
        os.remove(path)
    end)
end)

describe("batches", function()
    local ds = pr.data.dataset(pr.arange(1, 11):view(10, 1), pr.arange(1, 11):long())

    it("cover every row once, unshuffled as views and shuffled by seed", function()
        local seen = {}
        local it, nb = ds:batches{batch = 4}
        assert.are.equal(3, nb)
        for x, y in it do
            for _, v in ipairs(y:totable()) do seen[#seen + 1] = v end
        end
        assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, seen)
        local function order(seed)
            pr.seed(seed)
            local o = {}
            for x, y in ds:batches{batch = 3, shuffle = true} do
                for _, v in ipairs(y:totable()) do o[#o + 1] = v end
                assert.are.equal(x:view(-1):totable()[1], y:totable()[1]) -- rows stay paired
            end
            return o
        end
        local a, b = order(5), order(5)
        assert.are.same(a, b)
        table.sort(a)
        assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, a)
        local _, nd = ds:batches{batch = 4, drop_last = true}
        assert.are.equal(2, nd)
    end)

    it("splits off a validation set reproducibly", function()
        local tr, va = ds:split(0.3, {seed = 1})
        assert.are.equal(7, tr:size())
        assert.are.equal(3, va:size())
        local tr2, va2 = ds:split(0.3, {seed = 1})
        assert.are.same(va.y:totable(), va2.y:totable())
    end)
end)

describe("fit and evaluate", function()
    it("train a small net on a slice of Fashion-MNIST above chance, with a history", function()
        pr.seed(1)
        local ds = pr.data.fashion_mnist{split = "train", limit = 2000}
        local tr, va = ds:split(500, {seed = 2})
        local m = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
        local log = {}
        local hist = pr.train.fit(m, tr, {epochs = 3, batch = 32, val = va, progress = false,
            log = {write = function(_, ...) log[#log + 1] = table.concat({...}) end, flush = function() end}})
        assert.are.equal(3, #hist)
        assert.is_true(hist[3].loss < hist[1].loss)
        assert.is_true(hist[3].val_accuracy > 0.6)
        assert.truthy(log[1]:find("epoch 1/3", 1, true))
        local loss, acc = pr.train.evaluate(m, va)
        assert.is_true(math.abs(acc - hist[3].val_accuracy) < 1e-9)
        assert.is_true(loss > 0)
        assert.is_true(m:is_training())
    end)

    it("stops on a NaN loss naming the step", function()
        local m = nn.Sequential(nn.Linear(2, 2))
        local ds = pr.data.dataset(pr.tensor({{1, 1}, {0 / 0, 1}}), pr.tensor({1, 2}, "int64"))
        local ok, err = pcall(pr.train.fit, m, ds, {epochs = 1, batch = 1, shuffle = false, progress = false, quiet = true})
        assert.is_false(ok)
        assert.truthy(err:find("at epoch 1, batch 2 (step 2)", 1, true))
    end)
end)

describe("model files", function()
    it("save and load a model with masks and metadata, giving the same outputs", function()
        pr.seed(3)
        local m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        m:parameters()[1]:set_mask(pr.rand(4, 1, 3, 3):gt(0.5))
        m(pr.rand(8, 1, 6, 6)) -- moves the running statistics
        m:eval()
        local path = tmpname(".prunert")
        assert.is_true(pr.save(m, path, {criterion = "l1", history = {{epoch = 1, loss = 0.5}}}))
        local r, meta = pr.load(path)
        assert.are.equal("l1", meta.criterion)
        assert.are.equal(0.5, meta.history[1].loss)
        local x = pr.rand(2, 1, 6, 6)
        assert.is_true((m(x) - r(x)):abs():max():item() < 1e-6)
        assert.is_not_nil(r:parameters()[1]:mask())
        local info = pr.model.info(path)
        assert.truthy(info:find("0.weight_mask", 1, true))
        os.remove(path)
    end)

    it("refuses a damaged file and never leaves a half-written one", function()
        local m = nn.Sequential(nn.Linear(4, 2))
        local path = tmpname(".prunert")
        assert.is_true(pr.save(m, path))
        local f = io.open(path, "rb")
        local bytes = f:read("a")
        f:close()
        local cut = tmpname(".prunert")
        f = io.open(cut, "wb")
        f:write(bytes:sub(1, #bytes - 20))
        f:close()
        local r, err = pr.load(cut)
        assert.is_nil(r)
        assert.truthy(err:find(cut, 1, true))
        local ok, err2 = pr.save(m, "/nonexistent-dir/x.prunert")
        assert.is_nil(ok)
        assert.truthy(err2)
        os.remove(path)
        os.remove(cut)
    end)
end)
