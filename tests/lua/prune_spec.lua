-- The pruning engine's policy: criteria, granularity, thresholds, schedules, sensitivity,
-- reports (issue: the pruning engine).
local pr = require "prunert"
local nn, prune = pr.nn, pr.prune

local function weight(m) return m:own_params()[1][2] end
local function bias(m) return m:own_params()[2][2] end

-- A Linear whose weight is set by hand.
local function linear_with(rows, with_bias)
    local out, inf = #rows, #rows[1]
    local l = nn.Linear(inf, out, {bias = with_bias ~= false})
    weight(l):copy_(pr.tensor(rows))
    if with_bias ~= false then bias(l):fill_(1) end
    return l
end

local function mask_table(p) return p:mask():totable() end

describe("criteria give exactly the expected mask", function()
    it("magnitude per element", function()
        local l = linear_with({{0.1, -0.5, 0.3}, {-0.2, 0.05, 0.9}})
        prune.apply(l, {criterion = "l1", amount = 0.5})
        assert.are.same({{0, 1, 1}, {0, 0, 1}}, mask_table(weight(l)))
        assert.are.equal(0, weight(l):get(1, 1))
    end)

    it("l2 filters (rows) with their bias", function()
        local l = linear_with({{1, 1, 1}, {3, 0, 0}, {0.5, 0.5, 0.5}, {2, 2, 0}})
        prune.apply(l, {criterion = "l2", granularity = "neuron", amount = 0.5})
        -- L2 norms: 1.73, 3, 0.87, 2.83 -> rows 1 and 3 go
        assert.are.same({{0, 0, 0}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}}, mask_table(weight(l)))
        assert.are.same({0, 1, 0, 1}, mask_table(bias(l)))
    end)

    it("l1 filters of a conv", function()
        local c = nn.Conv2d(1, 3, 2, {bias = false})
        weight(c):copy_(pr.tensor({{{{1, 1}, {1, 1}}}, {{{0.1, 0.1}, {0.1, 0.1}}}, {{{5, 0}, {0, 0}}}}))
        prune.apply(c, {criterion = "l1", granularity = "filter", amount = 1 / 3})
        local m = weight(c):mask()
        assert.are.equal(0, m:narrow(1, 2, 1):sum():item())
        assert.are.equal(8, m:sum():item())
    end)

    it("input channels (columns)", function()
        local l = linear_with({{1, 0.1, 3}, {1, 0.2, 3}}, false)
        prune.apply(l, {criterion = "l1", granularity = "channel", amount = 0.34})
        assert.are.same({{1, 0, 1}, {1, 0, 1}}, mask_table(weight(l)))
    end)

    it("random keeps exactly the asked count", function()
        pr.seed(3)
        local l = nn.Linear(10, 10)
        prune.apply(l, {criterion = "random", amount = 0.3})
        assert.are.equal(30, weight(l):mask():eq(0):sum():item())
    end)

    it("gradient and Taylor scores from data", function()
        pr.seed(4)
        local m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        local ds = pr.data.dataset(pr.randn(32, 4), pr.randint(1, 3, {32}))
        local rep = prune.apply(m, {criterion = "taylor", amount = 0.5, data = ds, batches = 2})
        assert.are.equal(0.5, rep.sparsity)
        -- gradients left over from training do not get in the way (and are cleared after)
        pr.nn.functional.cross_entropy(m(ds.x), ds.y):backward()
        prune.apply(m, {criterion = "gradient", amount = 0.75, data = ds, layers = {"0.weight"}})
        assert.is_nil(weight(m:children()[1]):grad())
        assert.are.equal(9, weight(m:children()[1]):mask():eq(0):sum():item())
    end)

    it("activity and APoZ per neuron from data", function()
        local l1 = linear_with({{1, 0}, {-1, 0}, {0, 1}})
        local m = nn.Sequential(l1, nn.ReLU(), nn.Linear(3, 2))
        -- inputs are positive: neuron 2 (weights -1, 0) never fires after the ReLU
        local ds = pr.data.dataset(pr.rand(16, 2) + 0.1, pr.randint(1, 3, {16}))
        bias(l1):fill_(0)
        prune.apply(m, {criterion = "apoz", granularity = "neuron", amount = 1 / 3, data = ds, layers = {"0.weight"}})
        assert.are.same({{1, 1}, {0, 0}, {1, 1}}, mask_table(weight(l1)))
        assert.has_error(function() prune.apply(m, {criterion = "activity", granularity = "neuron", amount = 0.5}) end,
            "prune: criterion 'activity' needs data = a data set to measure on")
    end)

    it("BN scale scores the channels of the conv before it", function()
        local c = nn.Conv2d(1, 3, 1, {bias = false})
        local bn = nn.BatchNorm2d(3)
        bn:own_params()[1][2]:copy_(pr.tensor({0.5, -0.01, 2}))
        local m = nn.Sequential(c, bn, nn.ReLU())
        prune.apply(m, {criterion = "bn_gamma", granularity = "filter", amount = 1 / 3})
        assert.are.same({{{{1}}}, {{{0}}}, {{{1}}}}, mask_table(weight(c)))
    end)

    it("a user's criterion is a Lua function and shares selection with the built-ins", function()
        local l = linear_with({{1, 2}, {3, 4}})
        prune.apply(l, {criterion = function(ctx) return ctx.weight:neg() end, amount = 0.25})
        assert.are.same({{1, 1}, {1, 0}}, mask_table(weight(l)))
        assert.has_error(function()
            prune.apply(l, {criterion = function() return pr.zeros(3) end, amount = 0.5})
        end, "prune: custom criterion for weight returned [3], expected the weight's shape [2,2]")
    end)
end)

describe("thresholds", function()
    local function two_layers()
        local a = linear_with({{1, 2}, {3, 4}}, false)
        local b = linear_with({{10, 20}, {30, 40}}, false)
        return nn.Sequential(a, b), a, b
    end

    it("global and layer scope differ as they should", function()
        local m, a, b = two_layers()
        prune.apply(m, {criterion = "l1", amount = 0.5, scope = "layer"})
        assert.are.same({{0, 0}, {1, 1}}, mask_table(weight(a)))
        assert.are.same({{0, 0}, {1, 1}}, mask_table(weight(b)))
        m, a, b = two_layers()
        prune.apply(m, {criterion = "l1", amount = 0.5, scope = "global", min_keep = 0})
        assert.are.same({{0, 0}, {0, 0}}, mask_table(weight(a)))
        assert.are.same({{1, 1}, {1, 1}}, mask_table(weight(b)))
        m, a, b = two_layers()
        prune.apply(m, {criterion = "l1", amount = 0.5, scope = "global", min_keep = 1})
        assert.are.equal(1, weight(a):mask():sum():item()) -- the floor keeps one
        assert.are.equal(3, weight(b):mask():sum():item())
    end)

    it("mu - k*sigma matches a hand computation; absolute thresholds cut below the value", function()
        local l = linear_with({{1, 2, 3, 4, 5}}, false)
        -- |w| = 1..5: mean 3, population std sqrt(2) = 1.414; k = 1 -> threshold 1.586
        prune.apply(l, {criterion = "l1", k = 1})
        assert.are.same({{0, 1, 1, 1, 1}}, mask_table(weight(l)))
        local l2 = linear_with({{1, 2, 3, 4, 5}}, false)
        prune.apply(l2, {criterion = "l1", threshold = 3.5})
        assert.are.same({{0, 0, 0, 1, 1}}, mask_table(weight(l2)))
    end)

    it("excluded layers are left alone", function()
        local m, a, b = two_layers()
        prune.apply(m, {amount = 0.5, exclude = {"0.weight"}})
        assert.is_nil(weight(a):mask())
        assert.is_not_nil(weight(b):mask())
    end)

    it("pruned stays pruned and amounts count it", function()
        local l = linear_with({{5, 4, 3, 2, 1, 6, 7, 8}}, false)
        prune.apply(l, {amount = 0.25})
        assert.are.same({{1, 1, 1, 0, 0, 1, 1, 1}}, mask_table(weight(l)))
        prune.apply(l, {amount = 0.5})
        -- the two already pruned count toward the four: 3 and 4 go next
        assert.are.same({{1, 0, 0, 0, 0, 1, 1, 1}}, mask_table(weight(l)))
    end)

    it("magnitude masks agree with a reference computed by sorting", function()
        pr.seed(9)
        local l = nn.Linear(50, 40)
        local w = weight(l):clone()
        prune.apply(l, {amount = 0.37})
        local vals = {}
        for _, row in ipairs(w:abs():totable()) do for _, v in ipairs(row) do vals[#vals + 1] = v end end
        table.sort(vals)
        local k = math.floor(0.37 * 2000 + 0.5)
        local cut = vals[k]
        local m = weight(l):mask()
        local expected = w:abs():gt(cut)
        assert.are.equal(0, (m - expected):abs():sum():item())
    end)

    it("block and 2:4 masks have the right pattern", function()
        local l = linear_with({{1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4}, {4, 3, 2, 1, 9, 0.1, 8, 0.2}}, false)
        prune.apply(l, {criterion = "l1", granularity = {n = 2, m = 4}})
        assert.are.same({{0, 0, 1, 1, 0, 0, 1, 1}, {1, 1, 0, 0, 1, 0, 1, 0}}, mask_table(weight(l)))
        local b = linear_with({{1, 1, 1, 1, 9, 9, 9, 9}, {1, 1, 1, 1, 9, 9, 9, 9}}, false)
        prune.apply(b, {criterion = "l1", granularity = {block = {1, 4}}, amount = 0.5})
        assert.are.same({{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 1, 1, 1, 1}}, mask_table(weight(b)))
    end)

    it("bad input gives a clear error", function()
        local l = nn.Linear(6, 2)
        assert.has_error(function() prune.apply(l, {amount = 1.5}) end, "prune: amount must be in [0, 1], got 1.5")
        assert.has_error(function() prune.apply(l, {criterion = "nope", amount = 0.5}) end)
        assert.has_error(function() prune.apply(l, {granularity = {n = 2, m = 4}}) end,
            "prune: 2:4 needs weight's input size 6 to be a multiple of 4")
        local c = nn.Conv2d(2, 3, 2)
        prune.apply(c, {granularity = {n = 2, m = 4}}) -- 2*2*2 = 8 inputs per filter
        assert.are.equal(12, weight(c):mask():sum():item())
        assert.has_error(function() prune.apply(l, {}) end,
            "prune: give exactly one of amount, threshold (absolute) or k (mu - k*sigma)")
    end)
end)

describe("schedules", function()
    it("AGP hits its formula's values step by step and the final target exactly", function()
        pr.seed(5)
        local m = nn.Sequential(nn.Linear(20, 50))
        local s = prune.schedule.agp{initial = 0.1, final = 0.9, start = 0, steps = 4, every = 2}
        local w = weight(m:children()[1])
        for step = 1, 12 do
            s.on_batch(step, 0, m)
            local t = step - 1
            if s.is_pruning_step(t) then
                local k = t // 2
                local target = 0.9 + (0.1 - 0.9) * (1 - k / 4) ^ 3
                local zeros = w:mask():eq(0):sum():item()
                assert.are.equal(math.floor(target * 1000 + 0.5), zeros)
            end
        end
        assert.are.equal(900, w:mask():eq(0):sum():item())
        assert.are.equal(5, #s.history)
    end)

    it("AGP inside fit, with pruned weights still exactly zero after fine-tuning", function()
        pr.seed(6)
        local m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        local ds = pr.data.dataset(pr.randn(64, 8), pr.randint(1, 4, {64}))
        local s = prune.schedule.agp{final = 0.8, steps = 3, every = 4}
        pr.train.fit(m, ds, {epochs = 4, batch = 8, on_batch = s.on_batch, progress = false, quiet = true,
                             optimizer = pr.optim.Adam(m:parameters(), {lr = 0.01})})
        for _, p in ipairs({weight(m:children()[1]), weight(m:children()[3])}) do
            assert.are.equal(0, (p:mask():eq(0) * p:ne(0)):sum():item())
        end
        assert.is_true(math.abs(prune.summary(m).sparsity - 0.8) < 0.01)
    end)

    it("iterative and layer-by-layer prune and fine-tune", function()
        pr.seed(7)
        local m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        local ds = pr.data.dataset(pr.randn(64, 8), pr.randint(1, 4, {64}))
        local h = prune.schedule.iterative(m, ds, {rounds = 3, final = 0.75, prune = {criterion = "l1"},
            fine_tune = {epochs = 1, batch = 16, progress = false, quiet = true}, val = ds})
        assert.are.equal(3, #h)
        assert.is_true(math.abs(h[3].sparsity - 0.75) < 0.01)
        local m2 = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        local h2 = prune.schedule.layer_by_layer(m2, ds, {prune = {amount = 0.5},
            fine_tune = {epochs = 1, batch = 16, progress = false, quiet = true, freeze = {"2"}}})
        assert.are.equal(2, #h2)
        assert.are.equal("0.weight", h2[1].layer)
    end)

    it("frozen layers do not move during fine-tuning", function()
        pr.seed(8)
        local m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        local before = weight(m:children()[1]):clone()
        local o = prune.schedule.fine_tune_optimizer(m, {lr = 0.1, freeze = {"0"}})
        local ds = pr.data.dataset(pr.randn(16, 4), pr.randint(1, 3, {16}))
        pr.train.fit(m, ds, {epochs = 2, batch = 4, optimizer = o, progress = false, quiet = true})
        assert.are.equal(0, (weight(m:children()[1]) - before):abs():sum():item())
    end)
end)

describe("sensitivity and reports", function()
    it("analyses each layer, restores it, and derives amounts under a budget", function()
        pr.seed(10)
        local m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        local ds = pr.data.dataset(pr.randn(64, 8), pr.randint(1, 4, {64}))
        local before = weight(m:children()[1]):clone()
        local csv = os.tmpname()
        local sens = prune.sensitivity(m, ds, {amounts = {0.25, 0.5, 0.9}, csv = csv})
        assert.are.equal(2, #sens.layers)
        assert.are.equal(3, #sens.layers[1].results)
        assert.are.equal(0, (weight(m:children()[1]) - before):abs():sum():item())
        assert.is_nil(weight(m:children()[1]):mask())
        local f = io.open(csv)
        local text = f:read("a")
        f:close()
        os.remove(csv)
        assert.truthy(text:find("^layer,amount,loss,accuracy\n0.weight,0.2500,"))
        local amounts = prune.sensitivity.amounts(sens, {budget = 1.0})
        assert.are.equal(0.9, amounts["0.weight"])
    end)

    it("reports parameters, non-zeros, sparsity and FLOPs per layer", function()
        local m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
        prune.apply(m, {amount = 0.5, layers = {"3.weight"}})
        local rep = prune.report(m, {input = {1, 1, 28, 28}, quiet = true})
        assert.are.equal(2, #rep.layers)
        assert.are.equal(2 * 36 * 26 * 26, rep.layers[1].flops)
        assert.are.equal(2 * 2704 * 10, rep.layers[2].flops)
        assert.are.equal(2704 * 10 + 10 - 13520, rep.layers[2].nonzero)
        assert.are.equal(rep.layers[2].flops / 2, rep.layers[2].effective_flops)
        assert.truthy(prune.report.text(rep):find("total", 1, true))
    end)
end)

describe("gradient masks (seed 000, with the absolute value)", function()
    it("zeroes small gradients of either sign and counts them", function()
        local l = linear_with({{1, 1}}, false)
        l(pr.tensor({{1e-4, -2}})):sum():backward()
        local g = weight(l):grad()
        assert.is_true(math.abs(g:get(1, 1) - 1e-4) < 1e-9)
        assert.are.equal(-2, g:get(1, 2))
        local hook = prune.gradient_mask(l, {threshold = 1e-3})
        hook.apply()
        assert.are.equal(0, g:get(1, 1))
        assert.are.equal(-2, g:get(1, 2)) -- the seed's signed compare would have zeroed this
        assert.are.equal(1, hook.suppressed)
    end)
end)
