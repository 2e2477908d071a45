-- The Lua face of tensors (issue: Foundation): creation, views, arithmetic, reductions,
-- selection, seeding, printing, autograd fields and lifetime.
local pr = require "prunert"

local function near(a, b, tol)
    return math.abs(a - b) <= (tol or 1e-5) * math.max(1, math.abs(a), math.abs(b))
end

local function assert_near(expected, actual, tol)
    assert.is_true(near(expected, actual, tol),
        string.format("expected %.9g, got %.9g", expected, actual))
end

-- Element-wise comparison of a tensor (or nested table) with a nested table.
local function assert_table_near(expected, actual, tol)
    if pr.is_tensor(actual) then actual = actual:totable() end
    assert.are.equal(#expected, #actual)
    for i = 1, #expected do
        if type(expected[i]) == "table" then
            assert_table_near(expected[i], actual[i], tol)
        else
            assert_near(expected[i], actual[i], tol)
        end
    end
end

local function lua_list(t)
    local out = {}
    for i = 1, t:numel() do out[i] = t:get(i) end
    return out
end

describe("creation", function()
    it("pr.tensor builds from nested tables, float32 by default", function()
        local t = pr.tensor({{1, 2, 3}, {4, 5, 6}})
        assert.are.same({2, 3}, t:shape())
        assert.are.equal("float32", t:dtype())
        assert.are.same({{1, 2, 3}, {4, 5, 6}}, t:totable())
        assert.are.equal(6, t:get(2, 3))
        assert.are.equal(2, t:dim())
        assert.are.equal(6, t:numel())
        assert.are.equal(2, #t)
        assert.are.equal(3, t:size(2))
        assert.are.equal(3, t:size(-1))
        assert.are.same({2, 3}, t:size())
    end)

    it("pr.tensor takes a dtype, numbers and tensors", function()
        local i = pr.tensor({{1, -2}, {3, 9007199254740993}}, "int64")
        assert.are.equal("int64", i:dtype())
        assert.are.equal(9007199254740993, i:get(2, 2)) -- beyond 2^53: no trip through doubles
        assert.is_true(math.type(i:get(1, 2)) == "integer")
        local b = pr.tensor({0, 255}, "uint8")
        assert.are.same({0, 255}, b:totable())
        local s = pr.tensor(2.5)
        assert.are.equal(0, s:dim())
        assert.are.same({}, s:shape())
        assert.are.equal(2.5, s:item())
        local c = pr.tensor(i, "float32")
        assert.are.equal("float32", c:dtype())
        assert.are.equal(3, c:get(2, 1))
        local e = pr.tensor({})
        assert.are.same({0}, e:shape())
        assert.are.equal(0, e:numel())
    end)

    it("zeros, ones, full and empty take a shape table or varargs and a dtype", function()
        assert.are.same({{0, 0, 0}, {0, 0, 0}}, pr.zeros(2, 3):totable())
        assert.are.same({{1, 1}, {1, 1}}, pr.ones({2, 2}):totable())
        assert.are.equal("int64", pr.ones(2, 2, "int64"):dtype())
        assert.are.equal("uint8", pr.zeros({3}, "uint8"):dtype())
        assert.are.same({7, 7, 7}, pr.full({3}, 7):totable())
        assert.are.equal("int64", pr.full({3}, 7, "int64"):dtype())
        assert.are.same({4, 5}, pr.empty(4, 5):shape())
        assert.are.equal(0, pr.zeros():dim())
        assert.are.same({2, 0}, pr.zeros(2, 0):shape())
    end)

    it("arange, linspace and eye", function()
        assert.are.same({0, 1, 2, 3, 4}, pr.arange(5):totable())
        assert.are.same({2, 3}, pr.arange(2, 4):totable())
        assert_table_near({0, 0.25, 0.5, 0.75}, pr.arange(0, 1, 0.25))
        assert.are.same({5, 3, 1}, pr.arange(5, 0, -2):totable())
        assert.are.equal("int64", pr.arange(3, "int64"):dtype())
        assert_table_near({0, 0.25, 0.5, 0.75, 1}, pr.linspace(0, 1, 5))
        assert.are.same({{1, 0, 0}, {0, 1, 0}}, pr.eye(2, 3):totable())
        assert.are.same({{1, 0}, {0, 1}}, pr.eye(2):totable())
    end)

    it("converts dtypes; converting to the same dtype returns the tensor itself", function()
        local t = pr.tensor({1.7, -2.2, 3})
        assert.are.same({1, -2, 3}, t:long():totable())
        assert.are.equal("int64", t:long():dtype())
        assert.are.equal("uint8", t:abs():byte():dtype())
        assert.are.equal("float32", t:long():float():dtype())
        assert.are.equal("int64", t:to("int64"):dtype())
        assert.is_true(rawequal(t, t:float()))
        assert.is_true(rawequal(t, t:to("float32")))
    end)
end)

describe("views share storage", function()
    it("view and reshape of a contiguous tensor", function()
        local base = pr.arange(6)
        local v = base:view(2, 3)
        v:set(2, 1, 100)
        assert.are.equal(100, base:get(4))
        local r = base:reshape({3, -1})
        assert.are.same({3, 2}, r:shape())
        r:fill_(1)
        assert.are.same({1, 1, 1, 1, 1, 1}, base:totable())
    end)

    it("narrow, select, transpose, permute, squeeze, unsqueeze and expand are views", function()
        local base = pr.arange(12):view(3, 4)
        base:narrow(2, 2, 2):fill_(-1)
        assert.are.same({{0, -1, -1, 3}, {4, -1, -1, 7}, {8, -1, -1, 11}}, base:totable())
        base:select(1, 3):fill_(5)
        assert.are.same({5, 5, 5, 5}, base:select(1, 3):totable())
        assert.are.same({8, 5, 5, 5}, {8, base:get(3, 2), base:get(3, 3), base:get(3, 4)})
        local tt = base:t()
        assert.are.same({4, 3}, tt:shape())
        assert.is_false(tt:is_contiguous())
        tt:set(1, 2, 42)
        assert.are.equal(42, base:get(2, 1))
        local p = pr.zeros(2, 3, 4):permute(3, 1, 2)
        assert.are.same({4, 2, 3}, p:shape())
        assert.are.same({4, 2, 3}, pr.zeros(2, 3, 4):permute({3, 1, 2}):shape())
        local u = base:unsqueeze(1)
        assert.are.same({1, 3, 4}, u:shape())
        assert.are.same({3, 4, 1}, base:unsqueeze(-1):shape())
        u:set(1, 1, 1, 77)
        assert.are.equal(77, base:get(1, 1))
        local sq = u:squeeze()
        assert.are.same({3, 4}, sq:shape())
        assert.are.same({3, 4}, u:squeeze(1):shape())
        local e = pr.tensor({{1}, {2}}):expand(2, 3)
        assert.are.same({{1, 1, 1}, {2, 2, 2}}, e:totable())
        assert.are.equal(0, e:stride(2))
    end)

    it("contiguous, clone and reshape of a non-contiguous tensor copy", function()
        local base = pr.arange(6):view(2, 3)
        assert.is_true(rawequal(base, base:contiguous()))
        local c = base:t():contiguous()
        assert.is_true(c:is_contiguous())
        c:fill_(0)
        assert.are.equal(5, base:get(2, 3))
        local k = base:clone()
        k:fill_(0)
        assert.are.equal(5, base:get(2, 3))
        local r = base:t():reshape(6)
        assert.are.same({0, 3, 1, 4, 2, 5}, r:totable())
        r:fill_(9)
        assert.are.equal(5, base:get(2, 3))
    end)

    it("cat, stack, index_select and masked_select", function()
        local a, b = pr.tensor({{1, 2}}), pr.tensor({{3, 4}})
        assert.are.same({{1, 2}, {3, 4}}, pr.cat({a, b}):totable())
        assert.are.same({{1, 2, 3, 4}}, pr.cat({a, b}, 2):totable())
        assert.are.same({2, 1, 2}, pr.stack({a, b}):shape())
        assert.are.same({1, 2, 2}, pr.stack({a, b}, 2):shape())
        assert.are.same({{1, 3}, {2, 4}}, pr.stack({a:view(2), b:view(2)}, 2):totable())
        local m = pr.arange(12):view(3, 4)
        assert.are.same({{8, 9, 10, 11}, {0, 1, 2, 3}}, m:index_select(1, {3, 1}):totable())
        assert.are.same({{1, 1}, {5, 5}, {9, 9}}, m:index_select(2, pr.tensor({2, 2}, "int64")):totable())
        assert.are.same({{3}, {7}, {11}}, m:index_select(2, pr.tensor({4})):totable())
        assert.are.same({7, 8, 9, 10, 11}, m:masked_select(m:gt(6)):totable())
        assert.are.same({0, 4, 8}, m:masked_select(pr.tensor({1, 0, 0, 0})):totable())
    end)
end)

describe("arithmetic", function()
    it("broadcasts tensors of different shapes", function()
        local a = pr.tensor({{1, 2, 3}, {4, 5, 6}})
        local row = pr.tensor({10, 20, 30})
        assert.are.same({{11, 22, 33}, {14, 25, 36}}, (a + row):totable())
        local col = pr.tensor({{1}, {2}})
        assert.are.same({{1, 2, 3}, {8, 10, 12}}, (a * col):totable())
        local outer = pr.tensor({{1}, {2}, {3}}) * pr.tensor({{1, 10}})
        assert.are.same({{1, 10}, {2, 20}, {3, 30}}, outer:totable())
        assert.are.same({{0, 1, 2}, {3, 4, 5}}, (a - pr.tensor({1})):totable())
    end)

    it("takes numbers on either side of every operator", function()
        local x = pr.tensor({1, 2, 4})
        assert.are.same({3, 4, 6}, (x + 2):totable())
        assert.are.same({3, 4, 6}, (2 + x):totable())
        assert.are.same({-1, 0, 2}, (x - 2):totable())
        assert.are.same({1, 0, -2}, (2 - x):totable())
        assert.are.same({3, 6, 12}, (x * 3):totable())
        assert.are.same({3, 6, 12}, (3 * x):totable())
        assert.are.same({0.5, 1, 2}, (x / 2):totable())
        assert.are.same({4, 2, 1}, (4 / x):totable())
        assert.are.same({1, 4, 16}, (x ^ 2):totable())
        assert.are.same({2, 4, 16}, (2 ^ x):totable())
        assert.are.same({1, 4, 256}, (x ^ x):totable())
        assert.are.same({-1, -2, -4}, (-x):totable())
        assert.are.same({2, 4, 8}, x:add(x):totable())
        assert.are.same({0, 0, 0}, x:sub(x):totable())
        assert.are.same({1, 4, 16}, x:mul(x):totable())
        assert.are.same({1, 1, 1}, x:div(x):totable())
        assert.are.same({1, 8, 64}, x:pow(3):totable())
        assert.are.same({5, 6, 8}, pr.add(4, x):totable())
    end)

    it("== stays identity", function()
        local x = pr.ones(2)
        assert.is_true(x == x)
        assert.is_false(x == x:clone())
        assert.is_false(x == pr.ones(2))
    end)

    it("unary functions match Lua's math", function()
        local vals = {-2, -0.5, 0.25, 1, 3}
        local x = pr.tensor(vals)
        local function sig(v) return 1 / (1 + math.exp(-v)) end
        local function tanh(v) return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) end
        local got = {
            abs = x:abs(), exp = x:exp(), tanh = x:tanh(), sigmoid = x:sigmoid(),
            relu = x:relu(), neg = x:neg(), sign = x:sign(), clamp = x:clamp(-1, 1),
        }
        for i, v in ipairs(vals) do
            assert_near(math.abs(v), got.abs:get(i))
            assert_near(math.exp(v), got.exp:get(i))
            assert_near(tanh(v), got.tanh:get(i))
            assert_near(sig(v), got.sigmoid:get(i))
            assert_near(math.max(v, 0), got.relu:get(i))
            assert_near(-v, got.neg:get(i))
            assert_near(v > 0 and 1 or -1, got.sign:get(i))
            assert_near(math.max(-1, math.min(1, v)), got.clamp:get(i))
        end
        local p = pr.tensor({0.25, 1, 9})
        assert_table_near({0.5, 1, 3}, p:sqrt())
        assert_table_near({math.log(0.25), 0, math.log(9)}, p:log())
        assert.are.same({0.25, 1, 2}, p:clamp(nil, 2):totable())
        assert.are.same({1, 1, 9}, p:clamp(1):totable())
    end)

    it("comparisons give 0/1 tensors and where picks", function()
        local x = pr.tensor({1, 2, 3})
        assert.are.same({0, 1, 0}, x:eq(2):totable())
        assert.are.same({1, 0, 1}, x:ne(2):totable())
        assert.are.same({1, 0, 0}, x:lt(2):totable())
        assert.are.same({1, 1, 0}, x:le(2):totable())
        assert.are.same({0, 0, 1}, x:gt(2):totable())
        assert.are.same({0, 1, 1}, x:ge(2):totable())
        assert.are.same({0, 1, 0}, x:eq(pr.tensor({0, 2, 0})):totable())
        assert.are.same({0, 0, 3}, pr.where(x:gt(2), x, 0):totable())
        assert.are.same({-1, -1, 3}, pr.where(x:gt(2), x, pr.tensor({-1})):totable())
    end)

    it("in-place operations change the tensor and return it", function()
        local x = pr.tensor({1, 2, 3})
        assert.is_true(rawequal(x, x:add_(1)))
        assert.are.same({2, 3, 4}, x:totable())
        x:add_(pr.tensor({1, 1, 1}), -2)
        assert.are.same({0, 1, 2}, x:totable())
        assert.is_true(rawequal(x, x:mul_(3)))
        assert.are.same({0, 3, 6}, x:totable())
        x:mul_(pr.tensor({1, 2, 0.5}))
        assert.are.same({0, 6, 3}, x:totable())
        assert.is_true(rawequal(x, x:fill_(7)))
        assert.are.same({7, 7, 7}, x:totable())
        assert.is_true(rawequal(x, x:copy_(pr.tensor({5}))))
        assert.are.same({5, 5, 5}, x:totable())
        x:copy_({1, 2, 3})
        assert.are.same({1, 2, 3}, x:totable())
        assert.is_true(rawequal(x, x:zero_()))
        assert.are.same({0, 0, 0}, x:totable())
        local m = pr.zeros(2, 2)
        m:copy_(pr.tensor({1, 2}))
        assert.are.same({{1, 2}, {1, 2}}, m:totable())
    end)

    it("matmul, mm and pr.matmul agree with a hand computation", function()
        local a = pr.tensor({{1, 2, 3}, {4, 5, 6}})
        local b = pr.tensor({{1, 0}, {0, 1}, {1, 1}})
        local want = {{4, 5}, {10, 11}}
        assert.are.same(want, a:matmul(b):totable())
        assert.are.same(want, a:mm(b):totable())
        assert.are.same(want, pr.matmul(a, b):totable())
    end)
end)

describe("reductions", function()
    local m = pr.tensor({{1, 5, 3}, {4, 2, 6}})

    it("sum and mean, over everything or a dim, with keepdim", function()
        assert.are.equal(21, m:sum():item())
        assert.are.equal(0, m:sum():dim())
        assert.are.same({5, 7, 9}, m:sum(1):totable())
        assert.are.same({9, 12}, m:sum(2):totable())
        assert.are.same({9, 12}, m:sum(-1):totable())
        assert.are.same({{9}, {12}}, m:sum(2, true):totable())
        assert.are.equal(3.5, m:mean():item())
        assert.are.same({3, 4}, m:mean(2):totable())
        assert.are.equal(21, pr.sum(m):item())
    end)

    it("max and min give values and 1-based indices along a dim", function()
        assert.are.equal(6, m:max():item())
        assert.are.equal(1, m:min():item())
        local v, i = m:max(2)
        assert.are.same({5, 6}, v:totable())
        assert.are.same({2, 3}, i:totable())
        assert.are.equal("int64", i:dtype())
        v, i = m:min(1)
        assert.are.same({1, 2, 3}, v:totable())
        assert.are.same({1, 2, 1}, i:totable())
        v, i = m:max(1, true)
        assert.are.same({1, 3}, v:shape())
        assert.are.same({{2, 1, 2}}, i:totable())
        assert.are.equal(6, m:argmax():item())
        assert.are.equal(1, m:argmin():item())
        assert.are.same({2, 3}, m:argmax(2):totable())
        assert.are.same({1, 2}, m:argmin(2):totable())
    end)

    it("norms", function()
        local x = pr.tensor({{3, -4}, {0, 0}})
        assert_near(5, x:norm():item())
        assert_near(7, x:norm(1):item())
        assert_near(4, x:norm("inf"):item())
        assert_near(5, x:norm("fro"):item())
        assert_table_near({5, 0}, x:norm(2, 2))
        assert_near(math.sqrt(27 + 64) ^ (1 / 3) * 0 + (27 + 64) ^ (1 / 3), x:norm(3):item())
    end)
end)

describe("selection agrees with sorting a Lua table", function()
    local n = 101
    local x, sorted

    before_each(function()
        pr.seed(2024)
        x = pr.randn(n)
        sorted = lua_list(x)
        table.sort(sorted)
    end)

    it("sort ascending and descending, with indices into the original", function()
        local v, i = x:sort()
        local d, di = x:sort(1, true)
        for k = 1, n do
            assert.are.equal(sorted[k], v:get(k))
            assert.are.equal(sorted[k], x:get(i:get(k)))
            assert.are.equal(sorted[n + 1 - k], d:get(k))
            assert.are.equal(sorted[n + 1 - k], x:get(di:get(k)))
        end
    end)

    it("kthvalue", function()
        for _, k in ipairs({1, 2, 17, 51, 100, 101}) do
            local v, i = x:kthvalue(k)
            assert.are.equal(sorted[k], v:item())
            assert.are.equal(sorted[k], x:get(i:item()))
        end
    end)

    it("topk largest and smallest", function()
        local v, i = x:topk(5)
        local s, si = x:topk(5, 1, false)
        for k = 1, 5 do
            assert.are.equal(sorted[n + 1 - k], v:get(k))
            assert.are.equal(sorted[n + 1 - k], x:get(i:get(k)))
            assert.are.equal(sorted[k], s:get(k))
            assert.are.equal(sorted[k], x:get(si:get(k)))
        end
    end)

    it("quantile interpolates linearly as numpy", function()
        for _, q in ipairs({0, 0.1, 0.25, 0.5, 0.9, 1}) do
            local pos = (n - 1) * q
            local lo = math.floor(pos)
            local frac = pos - lo
            local want = sorted[lo + 1] + frac * ((sorted[math.min(lo + 2, n)]) - sorted[lo + 1])
            assert_near(want, x:quantile(q):item(), 1e-5)
        end
    end)

    it("works along a dim of a matrix, row by row", function()
        local m = pr.rand(4, 9)
        local v, i = m:kthvalue(3, 2)
        local tv = m:topk(2, 2)
        for r = 1, 4 do
            local row = lua_list(m:select(1, r))
            table.sort(row)
            assert.are.equal(row[3], v:get(r))
            assert.are.equal(row[3], m:get(r, i:get(r)))
            assert.are.equal(row[9], tv:get(r, 1))
            assert.are.equal(row[8], tv:get(r, 2))
            assert_near(row[5], m:quantile(0.5, 2):get(r))
        end
    end)
end)

describe("seeding", function()
    it("the same seed gives the same draws", function()
        pr.seed(7)
        local a, b, c = pr.rand(10), pr.randn(10), pr.randint(0, 100, {10})
        pr.seed(7)
        assert.are.same(a:totable(), pr.rand(10):totable())
        assert.are.same(b:totable(), pr.randn(10):totable())
        assert.are.same(c:totable(), pr.randint(0, 100, {10}):totable())
        pr.seed(8)
        assert.are_not.same(a:totable(), pr.rand(10):totable())
    end)

    it("a fixed seed gives fixed known values on every machine", function()
        pr.seed(42)
        assert_table_near({0.0838629678, 0.378980249, 0.680043399, 0.924692929}, pr.rand(4), 1e-7)
        assert_table_near({0.0158712938, -0.127309933, 0.47721681, -0.656759322}, pr.randn(4), 1e-7)
        assert.are.same({958, 85, 649, 893}, pr.randint(0, 1000, {4}):totable())
    end)

    it("randint stays in [low, high) and rand in [0, 1)", function()
        pr.seed(3)
        local r = pr.randint(1, 4, {1000})
        assert.are.equal("int64", r:dtype())
        local seen = {}
        for k = 1, 1000 do
            local v = r:get(k)
            assert.is_true(v >= 1 and v <= 3)
            seen[v] = true
        end
        assert.are.same({true, true, true}, seen)
        local z = pr.randint(3, {100}):float()
        assert.is_true(z:min():item() >= 0 and z:max():item() <= 2)
        local u = pr.rand(1000)
        assert.is_true(u:min():item() >= 0 and u:max():item() < 1)
    end)
end)

describe("tostring", function()
    it("prints like PyTorch with a dtype and shape line", function()
        assert.are.equal("tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]])\n" ..
                         "[float32 tensor of shape [2,2]]", tostring(pr.tensor({{1, 2}, {3, 4}})))
        assert.are.equal("tensor([  1, -20])\n[int64 tensor of shape [2]]",
                         tostring(pr.tensor({1, -20}, "int64")))
        assert.are.equal("tensor(2.5000)\n[float32 tensor of shape []]", tostring(pr.tensor(2.5)))
        assert.are.equal("tensor([])\n[float32 tensor of shape [0]]", tostring(pr.zeros(0)))
        assert.are.equal("tensor([1.0000e-05, 1.0000e+00])\n[float32 tensor of shape [2]]",
                         tostring(pr.tensor({1e-5, 1})))
    end)

    it("abbreviates more than 1000 elements with the first and last 3 per dim", function()
        local s = tostring(pr.arange(3000):view(100, 30))
        assert.is_truthy(s:find("...,", 1, true))
        assert.is_truthy(s:find("  ...,", 1, true))
        assert.is_truthy(s:find("2999.0000", 1, true))
        assert.is_falsy(s:find("1500.0000", 1, true))
        local _, lines = s:gsub("\n", "")
        assert.is_true(lines < 20)
        local small = tostring(pr.arange(1000))
        assert.is_falsy(small:find("...", 1, true))
        assert.is_truthy(small:find("500.0000", 1, true))
    end)

    it("marks tensors in the graph", function()
        local w = pr.ones(2):requires_grad(true)
        assert.is_truthy(tostring(w):find("requires_grad=true", 1, true))
        assert.is_truthy(tostring(w * 2):find("grad_fn=<mul>", 1, true))
    end)
end)

describe("element access", function()
    it("get, set and item use 1-based indices; negative ones count from the end", function()
        local t = pr.zeros(2, 3)
        assert.is_true(rawequal(t, t:set(2, 3, 5)))
        assert.are.equal(5, t:get(2, 3))
        assert.are.equal(5, t:get(-1, -1))
        t:set(-2, 1, 1.5)
        assert.are.equal(1.5, t:get(1, 1))
        assert.are.equal(4, pr.tensor({{4}}):item())
        local s = pr.tensor(3)
        s:set(8)
        assert.are.equal(8, s:get())
        assert.are.equal(8, s:totable())
    end)
end)

describe("autograd fields", function()
    it("requires_grad, backward, grad, zero_grad", function()
        local w = pr.tensor({1, -2, 3})
        assert.is_false(w:requires_grad())
        assert.is_true(rawequal(w, w:requires_grad(true)))
        assert.is_true(w:requires_grad())
        assert.is_nil(w:grad())
        local loss = (w * w):sum()
        assert.is_false(loss:is_leaf())
        assert.are.equal("sum", loss:grad_fn())
        loss:backward()
        assert.are.same({2, -4, 6}, w:grad():totable())
        ;(w * 3):sum():backward() -- gradients accumulate
        assert.are.same({5, -1, 9}, w:grad():totable())
        assert.is_true(rawequal(w, w:zero_grad()))
        assert.is_nil(w:grad())
        local y = w * 2
        y:backward(pr.tensor({1, 0, 1}))
        assert.are.same({2, 0, 2}, w:grad():totable())
    end)

    it("gradients flow through views made by the binding", function()
        local w = pr.tensor({{1, 2}, {3, 4}}):requires_grad(true)
        local l = w:select(1, 2):sum() + w:t():narrow(1, 1, 1):sum() * 10 + w:unsqueeze(1):squeeze():sum()
        l:backward()
        -- row 2 once, column 1 ten times, everything once
        assert.are.same({{11, 1}, {12, 2}}, w:grad():totable())
    end)

    it("detach cuts the graph, no_grad stops recording and restores the mode", function()
        local w = pr.ones(2):requires_grad(true)
        local d = w:detach()
        assert.is_false(d:requires_grad())
        d:set(1, 5)
        assert.are.equal(5, w:get(1)) -- detach shares storage
        local y, extra = pr.no_grad(function(a) return w * a, "x" end, 2)
        assert.are.equal("x", extra)
        assert.is_false(y:requires_grad())
        assert.is_true(pr.is_grad_enabled())
        local ok = pcall(pr.no_grad, function() error("boom") end)
        assert.is_false(ok)
        assert.is_true(pr.is_grad_enabled())
        do
            local g <close> = pr.no_grad_scope()
            assert.is_false(pr.is_grad_enabled())
            assert.is_false((w * 2):requires_grad())
        end
        assert.is_true(pr.is_grad_enabled())
        assert.is_true((w * 2):requires_grad())
    end)
end)

describe("lifetime", function()
    local function rss_mb()
        local f = io.open("/proc/self/statm")
        if not f then return nil end
        local _, resident = f:read("n", "n")
        f:close()
        return resident * 4096 / 2 ^ 20
    end

    it("__close and __gc release once and are safe twice; a closed tensor is an error", function()
        local mt = getmetatable(pr.ones(1))
        local t
        do
            local x <close> = pr.ones(3)
            t = x
        end
        mt.__close(t)
        mt.__gc(t)
        assert.are.equal("tensor (closed)", tostring(t))
        local ok, err = pcall(t.numel, t)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("closed tensor", 1, true))
        -- a view outlives its closed base: it holds its own reference to the storage
        local base = pr.arange(4)
        local v = base:view(2, 2)
        mt.__close(base)
        collectgarbage()
        assert.are.same({{0, 1}, {2, 3}}, v:totable())
    end)

    it("many small tensors in a loop", function()
        collectgarbage()
        local before = collectgarbage("count")
        local acc, want = pr.zeros(3), 0
        for i = 1, 20000 do
            acc:add_(pr.tensor({i % 5, 1, -(i % 3)}))
            want = want + i % 5
        end
        assert.are.same({want, 20000, -20001}, acc:totable())
        collectgarbage()
        assert.is_true(collectgarbage("count") - before < 1024)
    end)

    it("big tensors made in a loop do not grow memory without bound", function()
        collectgarbage()
        collectgarbage()
        local lua_before, rss_before = collectgarbage("count"), rss_mb()
        -- ASan keeps freed memory in quarantine, so resident size only means something without it
        local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") or os.getenv("ASAN_OPTIONS")
        local alive = setmetatable({}, {__mode = "v"})
        local peak = 0
        for k = 1, 100 do
            local t = pr.ones(1024, 1024) -- 4 MiB, written, so really resident
            assert.are.equal(1, t:get(1024, 1024))
            alive[k] = t
            local now = rss_mb()
            if now and now - rss_before > peak then peak = now - rss_before end
        end
        -- the collector ran during the loop because it was told the tensors' size: without
        -- that, all 100 (~400 MiB) are still alive here
        local n = 0
        for _ in pairs(alive) do n = n + 1 end
        assert.is_true(n <= 5, n .. " of 100 big tensors still alive")
        if rss_before and not sanitized then
            assert.is_true(peak < 120, string.format("resident memory grew by %.0f MiB", peak))
        end
        assert.is_true(collectgarbage("count") - lua_before < 1024)
    end)
end)
