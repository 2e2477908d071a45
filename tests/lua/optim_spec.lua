-- Optimizers, schedules, masks through training, and small learning problems.
local pr = require "prunert"
local nn, optim = pr.nn, pr.optim

local function count_nonzero_where_masked(p)
    local m = p:mask()
    return ((m:eq(0)) * p:abs():gt(0)):sum():item()
end

describe("optimizers", function()
    it("SGD with momentum matches the PyTorch update by hand", function()
        local p = pr.tensor({1.0, -2.0}):requires_grad(true)
        local o = optim.SGD({p}, {lr = 0.1, momentum = 0.9, weight_decay = 0.01})
        for _ = 1, 2 do
            o:zero_grad()
            ;(p * p):sum():backward()
            o:step()
        end
        -- step 1: g = 2p + 0.01p = 2.01p; buf = g; p1 = p - 0.1 g = 0.799 p
        -- step 2: g = 2.01 p1; buf = 0.9 * 2.01 p + 2.01 p1; p2 = p1 - 0.1 buf
        local p0 = 1.0
        local p1 = p0 - 0.1 * 2.01 * p0
        local buf = 0.9 * 2.01 * p0 + 2.01 * p1
        local p2 = p1 - 0.1 * buf
        assert.is_true(math.abs(p:get(1) - p2) < 1e-5)
        assert.is_true(math.abs(p:get(2) + 2 * p2) < 1e-5)
    end)

    it("Adam's first step moves every weight by lr", function()
        local p = pr.tensor({0.5, -3.0, 7.0}):requires_grad(true)
        local o = optim.Adam({p}, {lr = 0.01})
        o:zero_grad()
        ;(p * p):sum():backward()
        o:step()
        assert.is_true(math.abs(p:get(1) - 0.49) < 1e-5)
        assert.is_true(math.abs(p:get(2) + 2.99) < 1e-5)
        assert.is_true(math.abs(p:get(3) - 6.99) < 1e-5)
    end)

    for _, kind in ipairs({"SGD", "Adam", "AdamW"}) do
        it(kind .. " keeps masked weights exactly zero through 100 steps", function()
            pr.seed(7)
            local m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
            local w = m:parameters()[1]
            w:set_mask(pr.rand(8, 6):gt(0.5))
            local opts = kind == "SGD" and {lr = 0.1, momentum = 0.9, weight_decay = 1e-3, nesterov = true}
                or {lr = 0.05, weight_decay = 1e-2}
            local o = optim[kind](m:parameters(), opts)
            local x, y = pr.randn(32, 6), pr.randint(1, 4, {32})
            for _ = 1, 100 do
                o:zero_grad()
                pr.nn.functional.cross_entropy(m(x), y):backward()
                o:step()
            end
            assert.are.equal(0, count_nonzero_where_masked(w))
            assert.is_true(w:abs():sum():item() > 0)
        end)
    end

    it("parameter groups have their own lr, and frozen groups do not move", function()
        local a = pr.ones(2):requires_grad(true)
        local b = pr.ones(2):requires_grad(true)
        local o = optim.SGD({{params = {a}, lr = 0.5}, {params = {b}, frozen = true}}, {lr = 0.1})
        o:zero_grad()
        ;(a:sum() + b:sum()):backward()
        o:step()
        assert.are.equal(0.5, a:get(1))
        assert.are.equal(1, b:get(1))
        assert.has_error(function() optim.SGD({a}, {lr = 0.1, bogus = 1}) end, "SGD: unknown option 'bogus'")
    end)
end)

describe("schedules", function()
    local function opt() return optim.SGD({pr.ones(1):requires_grad(true)}, {lr = 1.0}) end

    it("step, multistep, cosine and warm-up follow their formulas", function()
        local s = optim.schedule.step(opt(), {step_size = 2, gamma = 0.5})
        local got = {}
        for _ = 1, 5 do got[#got + 1] = s:step() end
        assert.are.same({1.0, 0.5, 0.5, 0.25, 0.25}, got)
        local ms = optim.schedule.multistep(opt(), {milestones = {1, 3}, gamma = 0.1})
        assert.is_true(math.abs(ms:step() - 0.1) < 1e-12)
        ms:step()
        assert.is_true(math.abs(ms:step() - 0.01) < 1e-12)
        local c = optim.schedule.cosine(opt(), {T_max = 4})
        c:step()
        assert.is_true(math.abs(c:step() - 0.5) < 1e-12)
        local w = optim.schedule.warmup(opt(), {steps = 4, start_factor = 0.2})
        assert.is_true(math.abs(w:get_lr() - 0.2) < 1e-12)
        w:step()
        assert.is_true(math.abs(w:get_lr() - 0.4) < 1e-12)
        for _ = 1, 5 do w:step() end
        assert.are.equal(1.0, w:get_lr())
    end)
end)

describe("learning", function()
    it("a small MLP learns XOR", function()
        pr.seed(11)
        local x = pr.tensor({{0, 0}, {0, 1}, {1, 0}, {1, 1}})
        local y = pr.tensor({1, 2, 2, 1}, "int64")
        local m = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
        local o = optim.Adam(m:parameters(), {lr = 0.05})
        for _ = 1, 300 do
            o:zero_grad()
            pr.nn.functional.cross_entropy(m(x), y):backward()
            o:step()
        end
        local pred = m(x):argmax(2)
        assert.are.same({1, 2, 2, 1}, pred:view(4):totable())
    end)

    it("a small conv net drives the loss down on a fixed batch", function()
        pr.seed(12)
        local m = nn.Sequential(nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        local x, y = pr.randn(16, 1, 8, 8), pr.randint(1, 4, {16})
        local o = optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9})
        local first, last
        for i = 1, 60 do
            o:zero_grad()
            local l = pr.nn.functional.cross_entropy(m(x), y)
            if i == 1 then first = l:item() end
            last = l:item()
            l:backward()
            o:step()
        end
        assert.is_true(last < 0.2 * first)
    end)

    it("loss functions refuse wrong labels clearly", function()
        local logits = pr.randn(2, 3)
        assert.has_error(function() pr.nn.functional.cross_entropy(logits, pr.tensor({1, 2})) end)
        local ok, err = pcall(pr.nn.functional.cross_entropy, logits, pr.tensor({1, 4}, "int64"))
        assert.is_false(ok)
        assert.truthy(tostring(err):find("1-based", 1, true))
    end)
end)
