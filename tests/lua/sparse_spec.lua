-- sparse_spec.lua: sparse execution plans (m:set_exec / m:exec), pr.optimize, and the
-- compressed model-file encodings (sparse, quant8, kmeans4) from Lua (issue: sparse execution
-- and compressed model files).
local pr = require "prunert"
local nn, prune = pr.nn, pr.prune
local optimize = require "prunert.optimize"

local FORMATS = {"csr", "bsr1x4", "bsr4x1"}

local function weight(m) return m:own_params()[1][2] end

local function maxdiff(a, b) return (a - b):abs():max():item() end

local function run(m, x) return pr.no_grad(function() return m(x) end) end

-- Zeroes about `frac` of w's entries at random (through a mask, as pruning does).
local function sparsify(w, frac)
    local mask = pr.rand(table.unpack(w:shape())):ge(frac):float()
    w:set_mask(mask)
end

-- A 2:4 pattern along the flattened input columns: columns 3 and 4 of every group of 4 zero.
local function two_of_four(w)
    local s = w:shape()
    local rows, cols = s[1], w:numel() // s[1]
    local flat = {}
    for r = 1, rows do
        local row = {}
        for c = 1, cols do row[c] = ((c - 1) % 4 < 2) and 1 or 0 end
        flat[r] = row
    end
    w:set_mask(pr.tensor(flat):view(table.unpack(s)))
end

local made = {}
local function tmp(suffix)
    local base = os.tmpname()
    made[#made + 1] = base
    made[#made + 1] = base .. suffix
    return base .. suffix
end
teardown(function() for _, p in ipairs(made) do os.remove(p) end end)

local function file_size(path)
    local f = assert(io.open(path, "rb"))
    local n = f:seek("end")
    f:close()
    return n
end

describe("execution plans", function()
    it("Linear gives the dense output for every format, shapes not divisible by 4", function()
        pr.seed(3)
        for _, dims in ipairs({{13, 7, 5}, {64, 32, 16}, {30, 9, 1}}) do
            local l = nn.Linear(dims[1], dims[2])
            sparsify(weight(l), 0.7)
            l:eval()
            local x = pr.randn(dims[3], dims[1])
            local y0 = run(l, x)
            for _, f in ipairs(FORMATS) do
                assert.are.equal(l, l:set_exec(f))
                assert.are.equal(f, l:exec())
                assert.is_true(maxdiff(run(l, x), y0) <= 1e-4, f)
            end
            l:set_exec("dense")
            assert.are.equal("dense", l:exec())
        end
    end)

    it("packs again after the weights are edited in place, so it never runs an old layer", function()
        pr.seed(5)
        local l = nn.Linear(40, 12)
        sparsify(weight(l), 0.8)
        l:eval()
        local x = pr.randn(6, 40)
        local function dense_out()
            local plan = l:exec()
            l:set_exec("dense")
            local y = run(l, x)
            l:set_exec(plan)
            return y
        end
        l:set_exec("csr")
        local before = run(l, x)
        local edits = {
            function() weight(l):mul_(2) end,
            function() l:own_params()[2][2]:fill_(0) end,
            function() -- one kept element, through set
                local m, j = weight(l):mask(), 1
                while m:get(1, j) == 0 do j = j + 1 end
                weight(l):set(1, j, 7.5)
            end,
            function() weight(l):copy_(weight(l) * -0.5) end,
        }
        for i, edit in ipairs(edits) do
            pr.no_grad(edit)
            local y = run(l, x)
            assert.are.equal("csr", l:exec())
            assert.is_true(maxdiff(y, dense_out()) <= 1e-5, "edit " .. i)
            assert.is_true(maxdiff(y, before) > 1e-3, "edit " .. i .. " changed the output")
            before = y
        end
    end)

    it("Conv2d gives the dense output for every format, with stride, padding and dilation", function()
        pr.seed(4)
        local cases = {
            {nn.Conv2d(3, 5, 3), {2, 3, 9, 7}},
            {nn.Conv2d(3, 6, 3, {stride = 2, padding = 1}), {3, 3, 10, 11}},
            {nn.Conv2d(2, 7, {3, 2}, {dilation = 2, bias = false}), {1, 2, 9, 8}},
            -- wide rows (several 24-column tiles, a ragged last vector) and a row tail
            {nn.Conv2d(2, 3, 5, {padding = 2}), {2, 2, 7, 61}},
            {nn.Conv2d(1, 4, 1), {3, 1, 5, 3}},
            {nn.Conv2d(3, 4, 3, {stride = {2, 1}, padding = {0, 1}}), {2, 3, 11, 30}},
        }
        for _, c in ipairs(cases) do
            local m, shape = c[1], c[2]
            sparsify(weight(m), 0.6)
            m:eval()
            local x = pr.randn(table.unpack(shape))
            local y0 = run(m, x)
            for _, f in ipairs({"csr", "bsr1x4", "bsr4x1", "direct"}) do
                m:set_exec(f)
                assert.is_true(maxdiff(run(m, x), y0) <= 1e-4, f)
            end
        end
    end)

    it("nm2:4 runs where the mask fits 2:4 and is refused with a clear error otherwise", function()
        pr.seed(5)
        local l = nn.Linear(10, 6)
        local c = nn.Conv2d(3, 4, 3)
        for _, m in ipairs({l, c}) do m:eval() end
        local err = select(2, pcall(l.set_exec, l, "nm2:4"))
        assert.is_truthy(tostring(err):find("2 non-zeros in every group of 4", 1, true), tostring(err))
        assert.are.equal("dense", l:exec())
        two_of_four(weight(l))
        two_of_four(weight(c))
        local xl, xc = pr.randn(3, 10), pr.randn(2, 3, 6, 6)
        local yl, yc = run(l, xl), run(c, xc)
        l:set_exec("nm2:4")
        c:set_exec("nm2:4")
        assert.is_true(maxdiff(run(l, xl), yl) <= 1e-4)
        assert.is_true(maxdiff(run(c, xc), yc) <= 1e-4)
    end)

    it("is used only without grad, dropped by train(), and refused where it cannot apply", function()
        local l = nn.Linear(8, 4)
        local ok, err = pcall(l.set_exec, l, "csr")
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("eval", 1, true))
        l:eval()
        l:set_exec("csr")
        -- with grad on, the layer's own forward runs and records for backward
        local x = pr.randn(2, 8)
        local y = l(x)
        y:sum():backward()
        assert.is_not_nil(weight(l):grad())
        l:train()
        assert.are.equal("dense", l:exec())
        l:eval()
        assert.has_error(function() l:set_exec("coo") end)
        ok, err = pcall(l.set_exec, l, "direct")
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("Conv2d only", 1, true))
        local relu = nn.ReLU()
        relu:eval()
        ok, err = pcall(relu.set_exec, relu, "csr")
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("Linear and Conv2d", 1, true))
        local g = nn.Conv2d(4, 4, 3, {groups = 2})
        g:eval()
        ok, err = pcall(g.set_exec, g, "csr")
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("groups", 1, true))
        -- a plan checks its input like the layer does
        l:set_exec("csr")
        ok, err = pcall(run, l, pr.randn(2, 9))
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("[N,8]", 1, true), tostring(err))
    end)

    it("a plan packs the weight as it was: the mask is applied", function()
        local l = nn.Linear(6, 3, {bias = false})
        weight(l):fill_(1)
        weight(l):set_mask(pr.tensor({{1, 0, 1, 0, 1, 0}, {0, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}}))
        l:eval()
        l:set_exec("csr")
        local y = run(l, pr.ones(1, 6))
        assert.are.same({{3, 0, 6}}, y:totable())
    end)
end)

local function lenet()
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
end

describe("pr.optimize", function()
    it("installs the fastest plan per layer, keeps outputs, evaluates, and train() drops plans", function()
        pr.seed(6)
        local model = lenet()
        prune.apply(model, {scope = "global", amount = 0.85})
        model:eval()
        local x = pr.rand(32, 1, 28, 28)
        local y0 = run(model, x)
        local report = pr.optimize(model, x, {repeats = 3, print = false})
        assert.are.equal(4, #report)
        assert.is_true(report[3].sparsity > 0.8)  -- the big Linear takes most of the pruning
        for _, r in ipairs(report) do
            assert.is_string(r.plan)
            assert.is_true(r.dense_ms > 0 and r.plan_ms > 0 and r.speedup >= 1)
            assert.is_true(r.sparsity >= 0 and r.sparsity <= 1)
            -- the random pruning never fits 2:4: the report says why nm2:4 was skipped
            assert.is_string(r.skipped["nm2:4"])
        end
        assert.is_true(maxdiff(run(model, x), y0) <= 1e-4)
        local plans = optimize.plans(model)
        for _, r in ipairs(report) do
            assert.are.equal(r.plan ~= "dense" and r.plan or nil, plans[r.path])
        end
        -- evaluate (no_grad inside) runs with the plans and restores eval mode
        local ds = pr.data.dataset(x, pr.randint(1, 11, {32}):long())
        local loss0 = select(1, pr.train.evaluate(model, ds))
        assert.is_true(loss0 == loss0)
        assert.are.same(plans, optimize.plans(model))
        -- a plan survives as a name: restore on a copy gives the same outputs
        local copy = model:clone()
        optimize.restore(copy, plans)
        assert.are.same(plans, optimize.plans(copy))
        assert.is_true(maxdiff(run(copy, x), y0) <= 1e-4)
        assert.has_error(function() optimize.restore(copy, {["42"] = "csr"}) end)
        model:train()
        assert.are.same({}, optimize.plans(model))
        assert.is_true(maxdiff(run(model, x), y0) <= 1e-4)
    end)

    it("checks its options", function()
        local model = lenet()
        assert.has_error(function() pr.optimize(model, pr.rand(1, 1, 28, 28), {formats = {"coo"}}) end)
        assert.has_error(function() pr.optimize(model, pr.rand(1, 1, 28, 28), {repeats = 0}) end)
    end)
end)

describe("compressed model files", function()
    it("sparse is exact, quant8 and kmeans4 are close, and each file is smaller", function()
        pr.seed(7)
        local model = lenet()
        prune.apply(model, {scope = "global", amount = 0.9})
        model:eval()
        local x = pr.rand(16, 1, 28, 28)
        local y0 = run(model, x)
        local sizes, outs = {}, {}
        for _, enc in ipairs({"dense", "sparse", "quant8", "kmeans4"}) do
            local path = tmp("." .. enc .. ".prunert")
            local opts = {encodings = optimize.encodings(model:state_dict(), enc)}
            assert(pr.save(model, path, {note = enc}, opts))
            sizes[enc] = file_size(path)
            local info = assert(pr.io.model_file_info(path))
            for _, c in ipairs(info) do
                if c.kind == "tensor" then
                    local want = enc
                    if c.name:match("_mask$") and enc ~= "dense" then want = "sparse" end
                    assert.are.equal(want, c.encoding, c.name)
                end
            end
            local m2 = assert(pr.load(path))
            outs[enc] = run(m2, x)
            -- masks and zeros survive every encoding
            local sd, sd2 = model:state_dict(), m2:state_dict()
            for name, t in pairs(sd) do
                assert.are.equal(t:ne(0):sum():item(), sd2[name]:ne(0):sum():item(), name)
            end
        end
        assert.are.equal(0, maxdiff(outs.sparse, y0))
        assert.is_true(maxdiff(outs.quant8, y0) < 0.05)
        assert.is_true(maxdiff(outs.kmeans4, y0) < 0.2)
        assert.is_true(sizes.sparse < sizes.dense)
        assert.is_true(sizes.quant8 < sizes.sparse)
        assert.is_true(sizes.kmeans4 < sizes.quant8)
    end)

    it("chooses per tensor with a function and refuses unknown names", function()
        local model = lenet()
        local enc = optimize.encodings(model:state_dict(), function(name)
            return name:match("weight$") and "kmeans4" or nil
        end)
        assert.are.equal("kmeans4", enc["0.weight"])
        assert.are.equal("dense", enc["0.bias"])
        assert.has_error(function() optimize.encodings(model:state_dict(), "zip") end)
        local opts = optimize.save_options(model, {encoding = "quant8", level = 9})
        assert.are.equal(9, opts.level)
        assert.is_nil(opts.encoding)
        assert.are.equal("quant8", opts.encodings["7.weight"])
    end)

    it("refuses a damaged sparse chunk with a message", function()
        local model = lenet()
        prune.apply(model, {amount = 0.9})
        local path = tmp(".prunert")
        assert(pr.save(model, path, {}, {encodings = optimize.encodings(model:state_dict(), "sparse"),
                                         level = 0}))
        local f = assert(io.open(path, "rb"))
        local bytes = f:read("a")
        f:close()
        -- flip a byte in the middle of the largest chunk: the CRC refuses it before decoding
        local at = #bytes // 2
        local bad = bytes:sub(1, at - 1) .. string.char(bytes:byte(at) ~ 0x40) .. bytes:sub(at + 1)
        f = assert(io.open(path, "wb"))
        f:write(bad)
        f:close()
        local m, err = pr.load(path)
        assert.is_nil(m)
        assert.is_truthy(err:find("damaged", 1, true), err)
    end)
end)

describe("plans and new weights", function()
    it("are made again when load_state_dict brings new values", function()
        pr.seed(21)
        local a = nn.Sequential(nn.Linear(16, 8))
        local b = nn.Sequential(nn.Linear(16, 8))
        sparsify(weight(a:children()[1]), 0.9)
        sparsify(weight(b:children()[1]), 0.9)
        a:eval()
        b:eval()
        a:children()[1]:set_exec("csr")
        a:load_state_dict(b:state_dict())
        assert.are.equal("csr", a:children()[1]:exec())
        local x = pr.rand(3, 16)
        assert.is_true(maxdiff(run(a, x), run(b, x)) <= 1e-5)
    end)
end)
