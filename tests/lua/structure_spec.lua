-- Structural pruning: dependency groups, compaction, BN folding (issue: structural pruning).
local pr = require "prunert"
local nn, prune = pr.nn, pr.prune

local function max_diff(a, b) return (a - b):abs():max():item() end

local function lenet()
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
end

local function mlp()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
end

local function vgg()
    local function block(i, o) return nn.Sequential(nn.Conv2d(i, o, 3, {padding = 1, bias = false}), nn.BatchNorm2d(o), nn.ReLU()) end
    return nn.Sequential(block(3, 16), block(16, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
end

local function mobilenet()
    local function dw_sep(i, o, stride)
        return nn.Sequential(
            nn.Conv2d(i, i, 3, {padding = 1, stride = stride, groups = i, bias = false}), nn.BatchNorm2d(i), nn.ReLU(),
            nn.Conv2d(i, o, 1, {bias = false}), nn.BatchNorm2d(o), nn.ReLU())
    end
    return nn.Sequential(nn.Conv2d(3, 16, 3, {padding = 1, bias = false}), nn.BatchNorm2d(16), nn.ReLU(),
        dw_sep(16, 32, 1), dw_sep(32, 64, 2), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(64, 10))
end

local function resnet()
    local function basic(c)
        return nn.Residual(nn.Sequential(nn.Conv2d(c, c, 3, {padding = 1, bias = false}), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, {padding = 1, bias = false}), nn.BatchNorm2d(c)))
    end
    local function down(i, o)
        return nn.Residual(
            nn.Sequential(nn.Conv2d(i, o, 3, {padding = 1, stride = 2, bias = false}), nn.BatchNorm2d(o), nn.ReLU(),
                nn.Conv2d(o, o, 3, {padding = 1, bias = false}), nn.BatchNorm2d(o)),
            nn.Sequential(nn.Conv2d(i, o, 1, {stride = 2, bias = false}), nn.BatchNorm2d(o)))
    end
    return nn.Sequential(nn.Conv2d(3, 16, 3, {padding = 1, bias = false}), nn.BatchNorm2d(16), nn.ReLU(),
        basic(16), nn.ReLU(), down(16, 32), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(32, 10))
end

-- Random BN statistics so folding and compaction are tested on non-trivial values.
local function randomise_bn(m)
    for _, mod in ipairs(m:modules()) do
        local k = mod:kind()
        if k == "BatchNorm2d" or k == "BatchNorm1d" then
            local p = mod:own_params()
            p[1][2]:copy_(pr.rand(p[1][2]:numel()) + 0.5)
            p[2][2]:copy_(pr.randn(p[2][2]:numel()) * 0.1)
            local b = mod:own_buffers()
            b[1][2]:copy_(pr.randn(b[1][2]:numel()) * 0.1)
            b[2][2]:copy_(pr.rand(b[2][2]:numel()) + 0.5)
        end
    end
end

local cases = {
    {"LeNet-5", lenet, {2, 1, 28, 28}},
    {"an MLP", mlp, {2, 1, 28, 28}},
    {"a VGG-style net with BN", vgg, {2, 3, 16, 16}},
    {"a MobileNet-style depthwise-separable net", mobilenet, {2, 3, 16, 16}},
    {"a small ResNet", resnet, {2, 3, 16, 16}},
}

describe("compaction", function()
    for _, case in ipairs(cases) do
        local name, build, shape = case[1], case[2], case[3]
        it("of " .. name .. " gives the masked model's outputs with fewer parameters", function()
            pr.seed(1)
            local m = build()
            randomise_bn(m)
            local before = m:num_parameters()
            prune.structured(m, {criterion = "l1", amount = 0.5, input = shape})
            m:eval()
            local x = pr.rand(table.unpack(shape))
            local masked = m(x)
            local _, summary = prune.compact(m, {input = shape})
            local compacted = m(x)
            assert.is_true(summary.removed > 0)
            assert.is_true(m:num_parameters() < 0.75 * before)
            assert.is_true(max_diff(masked, compacted) <= 1e-5, name .. ": " .. max_diff(masked, compacted))
            -- a compacted model trains, saves and prunes again
            m:train()
            pr.nn.functional.cross_entropy(m(x), pr.tensor({1, 2}, "int64")):backward()
            prune.structured(m, {criterion = "l2", amount = 0.25, input = shape})
        end)
    end

    it("keeps channel counts multiples of round_to without changing outputs", function()
        pr.seed(2)
        local m = lenet()
        prune.structured(m, {amount = 0.3, input = {1, 1, 28, 28}})
        local x = pr.rand(2, 1, 28, 28)
        local y = m(x)
        prune.compact(m, {input = {1, 1, 28, 28}, round_to = 8})
        local c = m:children()[1]:config()
        assert.are.equal(0, c.out % 8)
        assert.is_true(max_diff(y, m(x)) <= 1e-5)
    end)

    it("removes L1-pruned filters of LeNet-5 (prune.apply with granularity filter) too", function()
        pr.seed(3)
        local m = lenet()
        prune.apply(m, {criterion = "l1", granularity = "filter", amount = 0.5, layers = {"0", "3"}})
        local x = pr.rand(2, 1, 28, 28)
        local y = m(x)
        prune.compact(m, {input = {1, 1, 28, 28}})
        assert.are.equal(10, m:children()[1]:config().out)
        assert.are.equal(25, m:children()[4]:config().out)
        assert.are.equal(25 * 16, m:children()[8]:config()["in"])
        assert.is_true(max_diff(y, m(x)) <= 1e-5)
    end)

    it("removes filters pruned by prune.apply on convs followed by BatchNorm", function()
        pr.seed(8)
        local m = vgg()
        randomise_bn(m)
        prune.apply(m, {criterion = "l1", granularity = "filter", amount = 0.5, layers = {"0.0", "1.0"}})
        m:eval()
        local x = pr.rand(2, 3, 16, 16)
        local y = m(x)
        local _, summary = prune.compact(m, {input = {1, 3, 16, 16}})
        assert.are.equal(16, summary.removed) -- 8 + 8 of 16 + 16, then 1.0 reads 8 inputs
        assert.are.equal(8, m:children()[2]:children()[1]:config()["in"])
        assert.is_true(max_diff(y, m(x)) <= 1e-5)
    end)

    it("a compacted model saves and loads", function()
        pr.seed(4)
        local m = vgg()
        prune.structured(m, {amount = 0.5, input = {1, 3, 16, 16}})
        prune.compact(m, {input = {1, 3, 16, 16}})
        m:eval()
        local path = os.tmpname()
        assert.is_true(pr.save(m, path))
        local r = pr.load(path)
        os.remove(path)
        local x = pr.rand(2, 3, 16, 16)
        assert.is_true(max_diff(m(x), r(x)) <= 1e-6)
    end)
end)

describe("dependency groups", function()
    it("tie residual sums and explain why a layer cannot be pruned alone", function()
        local m = resnet()
        local groups = prune.groups(m, {input = {1, 3, 16, 16}})
        local text = prune.structure.describe(groups)
        assert.truthy(text:find("is summed with", 1, true))
        local ok, err = pcall(prune.structured, m, {amount = 0.5, input = {1, 3, 16, 16}, layers = {"3.0.3"}})
        assert.is_false(ok)
        assert.truthy(err:find("cannot be pruned alone", 1, true))
        assert.truthy(err:find("they are pruned as one group", 1, true))
    end)

    it("mark the model's output and grouped convolutions as not prunable", function()
        local m = nn.Sequential(nn.Conv2d(4, 8, 3, {groups = 2}), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
        local groups = prune.groups(m, {input = {1, 4, 6, 6}})
        local reasons = {}
        for _, g in ipairs(groups) do if not g.prunable then reasons[#reasons + 1] = g.reason end end
        local all = table.concat(reasons, "\n")
        assert.truthy(all:find("grouped convolution", 1, true))
        assert.truthy(all:find("model's output", 1, true))
    end)

    it("couple depthwise and pointwise convs (seed 003)", function()
        pr.seed(5)
        local m = mobilenet()
        local groups = prune.groups(m, {input = {1, 3, 16, 16}})
        local found = false
        for _, g in ipairs(groups) do
            for _, mem in ipairs(g.members) do if mem.role == "depthwise" then found = true end end
        end
        assert.is_true(found)
        prune.structured(m, {criterion = "dw_coupled", amount = 0.5, input = {1, 3, 16, 16}})
        m:eval()
        local x = pr.rand(1, 3, 16, 16)
        local y = m(x)
        prune.compact(m, {input = {1, 3, 16, 16}})
        assert.is_true(max_diff(y, m(x)) <= 1e-5)
    end)
end)

describe("structured criteria", function()
    for _, crit in ipairs({"l2", "bn_gamma", "taylor", "activity", "apoz", "random"}) do
        it(crit .. " scores whole groups, and compaction keeps the outputs", function()
            pr.seed(7)
            local m = vgg()
            randomise_bn(m)
            local ds = pr.data.dataset(pr.rand(16, 3, 16, 16), pr.randint(1, 11, {16}))
            prune.structured(m, {criterion = crit, amount = 0.25, input = {1, 3, 16, 16}, data = ds, batches = 2})
            m:eval()
            local x = pr.rand(2, 3, 16, 16)
            local y = m(x)
            local _, summary = prune.compact(m, {input = {1, 3, 16, 16}})
            assert.is_true(summary.removed > 0)
            assert.is_true(max_diff(y, m(x)) <= 1e-5)
        end)
    end
end)

describe("BN folding", function()
    for _, case in ipairs({cases[3], cases[4], cases[5]}) do
        it("of " .. case[1] .. " matches eval-mode outputs", function()
            pr.seed(6)
            local m = case[2]()
            randomise_bn(m)
            m:eval()
            local x = pr.rand(table.unpack(case[3]))
            local y = m(x)
            local _, n = prune.fold_bn(m)
            assert.is_true(n > 0)
            assert.is_true(max_diff(y, m(x)) <= 1e-4)
        end)
    end
end)
