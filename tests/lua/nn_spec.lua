-- Layers, containers, names, state_dict, masks and printing (issue: autograd, layers, masks).
local pr = require "prunert"
local nn = pr.nn

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local function lenet()
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
end

describe("layers", function()
    before_each(function() pr.seed(1) end)

    it("Linear computes x W^T + b with PyTorch's init bounds", function()
        local l = nn.Linear(4, 3)
        local w, b
        for name, p in l:named_parameters() do
            if name == "weight" then w = p else b = p end
        end
        assert.are.same({3, 4}, w:shape())
        assert.are.same({3}, b:shape())
        assert.is_true(w:abs():max():item() <= 0.5 + 1e-6) -- 1/sqrt(4)
        local x = pr.randn(2, 4)
        local y = l(x)
        local ref = x:matmul(w:t()) + b
        assert.is_true(max_abs_diff(y, ref) < 1e-5)
    end)

    it("LeNet-5 maps a batch of images to 10 logits and counts its parameters", function()
        local m = lenet()
        local y = m(pr.rand(3, 1, 28, 28))
        assert.are.same({3, 10}, y:shape())
        -- 20*25+20 + 50*20*25+50 + 800*500+500 + 500*10+10
        assert.are.equal(520 + 25050 + 400500 + 5010, m:num_parameters())
    end)

    it("gives stable dotted names like PyTorch", function()
        local names = {}
        for name in lenet():named_parameters() do names[#names + 1] = name end
        assert.are.same({"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"}, names)
        local nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.BatchNorm1d(2))
        local n2 = {}
        for name in nested:named_parameters() do n2[#n2 + 1] = name end
        assert.are.same({"0.0.weight", "0.0.bias", "1.weight", "1.bias"}, n2)
        local bufs = {}
        for name in nested:named_buffers() do bufs[#bufs + 1] = name end
        assert.are.same({"1.running_mean", "1.running_var"}, bufs)
    end)

    it("conv with stride, padding, dilation and groups has the right output shape", function()
        local c = nn.Conv2d(4, 8, 3, {stride = 2, padding = 2, dilation = 2, groups = 2})
        local y = c(pr.rand(2, 4, 9, 9))
        -- out = floor((9 + 2*2 - 2*(3-1) - 1) / 2) + 1 = 5
        assert.are.same({2, 8, 5, 5}, y:shape())
        local dw = nn.Conv2d(6, 6, 3, {padding = 1, groups = 6})
        assert.are.same({6, 1, 3, 3}, dw:own_params()[1][2]:shape())
        assert.are.same({1, 6, 7, 7}, dw(pr.rand(1, 6, 7, 7)):shape())
    end)

    it("BatchNorm uses batch statistics in training and running ones in eval", function()
        local bn = nn.BatchNorm1d(3)
        local x = pr.randn(16, 3) * 2 + 5
        local y = bn(x)
        local mean = y:mean(1)
        assert.is_true(mean:abs():max():item() < 1e-4)
        local rm = bn:own_buffers()[1][2]
        -- momentum 0.1: running_mean = 0.9 * 0 + 0.1 * batch mean
        assert.is_true(max_abs_diff(rm, x:mean(1) * 0.1) < 1e-4)
        bn:eval()
        local y2 = bn(x)
        local rv = bn:own_buffers()[2][2]
        local ref = (x - rm) / (rv + 1e-5):sqrt()
        assert.is_true(max_abs_diff(y2, ref) < 1e-4)
    end)

    it("Residual sums body and shortcut; Concat joins channels", function()
        local body = nn.Sequential(nn.Conv2d(3, 3, 3, {padding = 1}), nn.ReLU())
        local r = nn.Residual(body)
        local x = pr.rand(2, 3, 5, 5)
        assert.is_true(max_abs_diff(r(x), body(x) + x) < 1e-5)
        local c = nn.Concat(nn.Conv2d(3, 2, 1), nn.Conv2d(3, 4, 1))
        assert.are.same({2, 6, 5, 5}, c(x):shape())
        local bad = nn.Residual(nn.Conv2d(3, 4, 1))
        assert.has_error(function() bad(x) end,
            "Residual: body output [2,4,5,5] and shortcut output [2,3,5,5] differ; they must match to be summed")
    end)

    it("Dropout is identity in eval and scales kept units in training", function()
        local d = nn.Dropout(0.5)
        local x = pr.ones(1000)
        local y = d(x:view(10, 100))
        local vals = y:view(1000)
        local zeros = vals:eq(0):sum():item()
        assert.is_true(zeros > 350 and zeros < 650)
        assert.is_true(max_abs_diff(vals:max(), pr.tensor(2)) < 1e-6)
        d:eval()
        assert.are.equal(0, max_abs_diff(d(x:view(10, 100)), x:view(10, 100)))
    end)

    it("names the layer, expected and given shapes on a wrong input", function()
        assert.has_error(function() nn.Linear(800, 500)(pr.rand(2, 784)) end,
            "Linear(800 -> 500): expected input [N,800], got [2,784]")
        assert.has_error(function() nn.Conv2d(3, 8, 3)(pr.rand(2, 1, 8, 8)) end,
            "Conv2d(3 -> 8, 3x3): expected input [N,3,H,W], got [2,1,8,8]")
        assert.has_error(function() nn.Linear(0, 3) end)
        assert.has_error(function() nn.Conv2d(3, 8, 3, {stride = 1, bogus = 2}) end, "Conv2d: unknown option 'bogus'")
    end)

    it("prints layers with their parameter counts", function()
        local s = tostring(lenet())
        assert.truthy(s:find("Conv2d(1 -> 20, 5x5)  [520 params]", 1, true))
        assert.truthy(s:find("Linear(800 -> 500)  [400500 params]", 1, true))
        assert.truthy(s:find("total: 431080 parameters", 1, true))
    end)
end)

describe("a layer followed by ReLU under no_grad (one fused pass)", function()
    before_each(function() pr.seed(2) end)

    -- Every kind of conv path (direct: 1 channel 5x5; GEMM: 8 channels 5x5; depthwise) and a
    -- Linear, each followed by a ReLU.
    local function net()
        return nn.Sequential(
            nn.Conv2d(1, 8, 5, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 5, {padding = 2}), nn.ReLU(),
            nn.Conv2d(12, 12, 3, {groups = 12, padding = 1}), nn.ReLU(),
            nn.Flatten(), nn.Linear(12 * 6 * 6, 30), nn.ReLU(), nn.Linear(30, 10), nn.ReLU())
    end
    -- The children one at a time: nothing fused.
    local function one_by_one(m, x)
        return pr.no_grad(function()
            for _, c in ipairs(m:children()) do x = c(x) end
            return x
        end)
    end
    local function nan_count(t) return t:ne(t):float():sum():item() end

    it("gives the unfused outputs bit for bit, NaN included, and the same under grad", function()
        local m = net()
        m:eval()
        local x = pr.randn(5, 1, 14, 14)
        local fused = pr.no_grad(function() return m(x) end)
        assert.are.same({5, 10}, fused:shape())
        assert.are.equal(0, max_abs_diff(fused, one_by_one(m, x)))
        assert.is_true(fused:eq(0):float():sum():item() > 0) -- the last ReLU did cut
        assert.are.equal(0, max_abs_diff(m(x):detach(), fused)) -- the recorded forward
        -- a NaN pixel spreads through the fused layers as through the separate ones
        local poke = pr.zeros(5 * 14 * 14)
        poke:set(100, 0 / 0)
        local xn = x + poke:view(5, 1, 14, 14)
        local a, b = pr.no_grad(function() return m(xn) end), one_by_one(m, xn)
        assert.is_true(nan_count(a) > 0)
        assert.are.equal(nan_count(b), nan_count(a))
        assert.are.same(b:ne(b):totable(), a:ne(a):totable())
    end)

    it("pools relu(x) in one op while training: same outputs and gradients as apart", function()
        local m = net()
        local x = pr.randn(4, 1, 14, 14)
        local y = m(x)                                        -- grad mode on: ReLU+MaxPool fused
        local kids = m:children()
        local z = x
        for i, c in ipairs(kids) do z = c(z) end              -- one by one, nothing fused
        assert.are.equal(0, max_abs_diff(y:detach(), z:detach()))
        local w = kids[1]:own_params()[1][2]
        y:sum():backward()
        local g1 = w:grad():clone()
        m:zero_grad()
        z:sum():backward()
        assert.are.equal(0, max_abs_diff(g1, w:grad()))
        assert.is_true(g1:abs():sum():item() > 0)
    end)

    it("runs sparse execution plans with the ReLU fused", function()
        local m = net()
        m:eval()
        local x = pr.randn(3, 1, 14, 14)
        for _, i in ipairs({1, 4, 9}) do
            local l = m:children()[i]
            local w = l:own_params()[1][2]
            w:set_mask(pr.rand(table.unpack(w:shape())):ge(0.6):float())
        end
        local want = one_by_one(m, x)
        m:children()[1]:set_exec("direct")
        m:children()[4]:set_exec("csr")
        m:children()[9]:set_exec("csr")
        assert.is_true(max_abs_diff(pr.no_grad(function() return m(x) end), want) <= 1e-5)
    end)

    it("leaves the layers apart while a ReLU or the layer gathers activity", function()
        local m = net()
        m:eval()
        local x = pr.randn(4, 1, 14, 14)
        local relu = m:children()[2]
        relu:collect_activity(true)
        pr.no_grad(function() return m(x) end)
        local _, zeros, count = relu:activity()
        local out = one_by_one(nn.Sequential(m:children()[1], nn.ReLU()), x)
        assert.are.equal(4 * 12 * 12, count)
        assert.are.equal(out:eq(0):float():sum():item(), zeros:float():sum():item())
        relu:collect_activity(false)
    end)
end)

describe("state", function()
    it("state_dict round-trips into a fresh model, and clone is deep", function()
        pr.seed(2)
        local a = lenet()
        pr.seed(3)
        local b = lenet()
        local x = pr.rand(2, 1, 28, 28)
        assert.is_true(max_abs_diff(a(x), b(x)) > 1e-4)
        b:load_state_dict(a:state_dict())
        assert.is_true(max_abs_diff(a(x), b(x)) < 1e-6)
        local c = a:clone()
        for _, p in c:named_parameters() do p:fill_(0) end
        assert.is_true(a(x):abs():sum():item() > 0)
    end)

    it("load_state_dict names missing, extra and wrongly shaped entries", function()
        local m = nn.Sequential(nn.Linear(2, 3))
        local sd = m:state_dict()
        sd["0.bias"] = nil
        assert.has_error(function() m:load_state_dict(sd) end, "load_state_dict: missing entry '0.bias'")
        sd = m:state_dict()
        sd["0.extra"] = pr.zeros(1)
        assert.has_error(function() m:load_state_dict(sd) end, "load_state_dict: unexpected entry '0.extra'")
        sd = m:state_dict()
        sd["0.weight"] = pr.zeros(3, 3)
        assert.has_error(function() m:load_state_dict(sd) end,
            "load_state_dict: '0.weight' has shape [3,3], the model expects [3,2]")
    end)

    it("rebuilds a model from its configuration tree", function()
        pr.seed(4)
        local m = nn.Sequential(nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Residual(nn.Conv2d(4, 4, 3, {padding = 1})), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(4, 2))
        local r = pr.nn.from_config(m:to_config())
        r:load_state_dict(m:state_dict())
        m:eval() r:eval()
        local x = pr.rand(2, 1, 6, 6)
        assert.is_true(max_abs_diff(m(x), r(x)) < 1e-6)
        assert.has_error(function() pr.nn.from_config({kind = "os.execute"}) end)
    end)
end)

describe("masks", function()
    it("keep a masked weight zero in forward whatever is written into it afterwards", function()
        pr.seed(4)
        local l = nn.Conv2d(2, 3, 3)
        local w, b = l:own_params()[1][2], l:own_params()[2][2]
        local keep = pr.rand(3, 2, 3, 3):ge(0.5):float()
        w:set_mask(keep)
        local x = pr.randn(2, 2, 6, 6)
        local writes = {
            function() w:copy_(pr.ones(3, 2, 3, 3)) end,            -- the whole tensor
            function() w:narrow(1, 2, 1):fill_(5) end,              -- through a view
            function() w:set(1, 1, 1, 1, 9) end,                    -- one element
            function() w:add_(pr.full({3, 2, 3, 3}, 0.25)) end,
        }
        for i, write in ipairs(writes) do
            pr.no_grad(write)
            local y = l(x)                                           -- recorded: grad mode on
            assert.are.equal(0, (w * (1 - keep)):abs():sum():item(), "write " .. i)
            -- the output is the masked weight's: the same conv with the masked values spelled out
            local want = pr.no_grad(function()
                local c = nn.Conv2d(2, 3, 3)
                c:own_params()[1][2]:copy_(w * keep)
                c:own_params()[2][2]:copy_(b)
                return c(x)
            end)
            assert.is_true(max_abs_diff(y:detach(), want) <= 1e-5, "write " .. i)
            y:sum():backward()
            assert.are.equal(0, (w:grad() * (1 - keep)):abs():sum():item(), "write " .. i)
            l:zero_grad()
        end
    end)

    it("keep masked weights at zero in forward, gradient and state_dict", function()
        local l = nn.Linear(3, 2)
        local w = l:own_params()[1][2]
        w:set_mask(pr.tensor({{1, 0, 1}, {0, 1, 1}}))
        assert.are.equal(0, w:get(1, 2))
        assert.are.equal(0, w:get(2, 1))
        local loss = l(pr.ones(4, 3)):sum()
        loss:backward()
        assert.are.equal(0, w:grad():get(1, 2))
        assert.are.equal(0, w:grad():get(2, 1))
        assert.is_true(w:grad():get(1, 1) ~= 0)
        local sd = l:state_dict()
        assert.is_not_nil(sd["weight_mask"])
        local l2 = nn.Linear(3, 2)
        l2:load_state_dict(sd)
        assert.is_not_nil(l2:own_params()[1][2]:mask())
    end)
end)
