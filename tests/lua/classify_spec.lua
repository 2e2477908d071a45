-- classify_spec.lua: examples/classify.c, a C host with no Lua, runs a model saved from Lua
-- (trained, pruned, one layer on a sparse plan) through prunert_model_load/forward and
-- predicts exactly what the Lua model predicts; a damaged file is refused with the reason.
local pr = require "prunert"
local nn = pr.nn
local util = require "spec_util"

local FASHION = os.getenv("PRUNERT_DATA") or "/usr/share/datasets/fashion-mnist"
local exe = util.build .. "/example_classify"

local made = {}
local function tmp(suffix)
    local p = os.tmpname() .. suffix
    made[#made + 1] = p
    return p
end
teardown(function() for _, p in ipairs(made) do os.remove(p) end end)

local function run(cmd)
    local out, err = tmp(".out"), tmp(".err")
    local ok = os.execute(cmd .. " >" .. util.q(out) .. " 2>" .. util.q(err))
    return ok, util.slurp(out) or "", util.slurp(err) or ""
end

describe("a C host running a saved model (examples/classify.c)", function()
    local N = 300
    local images, labels = FASHION .. "/t10k-images-idx3-ubyte.gz", FASHION .. "/t10k-labels-idx1-ubyte.gz"

    it("predicts what the Lua model predicts, pruned and on a sparse plan", function()
        local train = pr.data.fashion_mnist{split = "train"}:subset(1, 3000)
        local test = pr.data.fashion_mnist{split = "test"}:subset(1, N)
        pr.seed(1)
        local m = nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(8 * 12 * 12, 32), nn.ReLU(), nn.Linear(32, 10))
        local opt = pr.optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9})
        pr.train.fit(m, train, {epochs = 1, batch = 64, optimizer = opt, progress = false, quiet = true})
        pr.prune.apply(m, {criterion = "l1", amount = 0.6, scope = "global"})
        m:eval()
        m:children()[5]:set_exec("csr")
        local path = tmp(".prunert")
        assert(pr.save(m, path, {recipe = "classify_spec"}))

        local want = pr.no_grad(function() return m(test.x) end):argmax(2)
        local ok, out, err = run(util.q(exe) .. " " .. util.q(path) .. " " .. util.q(images) .. " " ..
            util.q(labels) .. " " .. N)
        assert.is_true(ok, err)
        local got = {}
        for line in out:gmatch("[^\n]+") do got[#got + 1] = tonumber(line) end
        assert.are.equal(N, #got)
        local same, correct = 0, 0
        for i = 1, N do
            if got[i] == want:get(i) then same = same + 1 end
            if got[i] == test.y:get(i) then correct = correct + 1 end
        end
        assert.are.equal(N, same)
        assert.truthy(err:find(string.format("%d of %d correct", correct, N), 1, true), err)
        assert.is_true(correct > N * 0.5) -- it learned something: the file holds the trained weights
    end)

    it("refuses a damaged model file with the reason, and bad usage", function()
        local path = tmp(".prunert")
        local m = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        assert(pr.save(m, path))
        local bytes = util.slurp(path)
        local f = assert(io.open(path, "wb"))
        f:write(bytes:sub(1, #bytes - 30))
        f:close()
        local ok, _, err = run(util.q(exe) .. " " .. util.q(path) .. " " .. util.q(images))
        assert.is_falsy(ok)
        assert.truthy(err:find(path, 1, true), err)
        ok, _, err = run(util.q(exe))
        assert.is_falsy(ok)
        assert.truthy(err:find("usage", 1, true), err)
    end)
end)
