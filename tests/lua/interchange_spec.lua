-- numpy / PyTorch interchange (issue: real data, training loop, model files, numpy).
-- tests/data/torch_small.npz was made by PyTorch 1.13 (tests/data/make_torch_fixture.py).
local pr = require "prunert"
local nn = pr.nn

local data_dir = (os.getenv("PRUNERT_SOURCE_DIR") or ".") .. "/tests/data/"

local function same_architecture()
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, {groups = 2}), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5), nn.Tanh(), nn.Linear(5, 3))
end

describe("PyTorch state dicts through numpy", function()
    it("load by name into the same architecture and give PyTorch's outputs", function()
        local sd = assert(pr.io.load_npz(data_dir .. "torch_small.npz"))
        local io = assert(pr.io.load_npz(data_dir .. "torch_small_io.npz"))
        local m = same_architecture()
        m:load_state_dict(sd)
        m:eval()
        local y = m(io.x)
        assert.are.same(io.y:shape(), y:shape())
        assert.is_true((y - io.y):abs():max():item() <= 1e-5)
    end)

    it("go back out to numpy and round-trip", function()
        local m = same_architecture()
        m:load_state_dict(assert(pr.io.load_npz(data_dir .. "torch_small.npz")))
        local path = os.tmpname()
        assert(pr.io.save_npz(path, m:state_dict()))
        local back = assert(pr.io.load_npz(path))
        os.remove(path)
        local m2 = same_architecture()
        m2:load_state_dict(back)
        m:eval() m2:eval()
        local x = pr.rand(2, 1, 8, 8)
        assert.are.equal(0, (m(x) - m2(x)):abs():max():item())
    end)

    it("name what does not fit", function()
        local sd = assert(pr.io.load_npz(data_dir .. "torch_small.npz"))
        local wrong = nn.Sequential(nn.Conv2d(1, 4, 3, {padding = 1}))
        local ok, err = pcall(wrong.load_state_dict, wrong, sd)
        assert.is_false(ok)
        assert.truthy(err:find("unexpected entry '7.weight'", 1, true))
    end)
end)
