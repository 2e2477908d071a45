-- Bad calls from Lua are error messages that say what was wrong, never crashes
-- (issue: Foundation). Each case checks the message text.
local pr = require "prunert"

-- Runs f(...), expects it to raise, and checks that the message contains every plain string
-- in `wants`.
local function fails_with(wants, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error")
    err = tostring(err)
    if type(wants) == "string" then wants = {wants} end
    for _, w in ipairs(wants) do
        assert.is_truthy(err:find(w, 1, true), string.format("message %q lacks %q", err, w))
    end
    return err
end

describe("argument types", function()
    it("name the argument and what was expected", function()
        local t = pr.ones(2)
        fails_with({"bad argument #1 to 'add'", "tensor, number or table expected, got string"},
                   function() return t:add("x") end)
        fails_with({"bad argument #2", "got string"}, function() return t + "x" end)
        fails_with({"bad argument #2 to 'sub'", "got boolean"}, function() return pr.sub(t, true) end)
        fails_with({"bad argument #1 to 'tensor'", "table, number or tensor expected, got string"},
                   function() return pr.tensor("x") end)
        fails_with({"bad argument #1 to 'numel'", "prunert.Tensor expected, got number"},
                   function() return pr.numel(3) end)
        local fake = setmetatable({}, {__index = pr.Tensor})
        fails_with({"calling 'sum' on bad self", "prunert.Tensor expected, got table"},
                   function() return fake:sum() end)
        fails_with({"bad argument #1 to 'narrow'", "number expected, got string"},
                   function() return t:narrow("a", 1, 1) end)
        fails_with({"bad argument #2 to 'full'", "number expected, got string"},
                   function() return pr.full({2}, "x") end)
        fails_with({"bad argument #1 to 'full'", "table expected, got number"},
                   function() return pr.full(2, 3) end)
        fails_with({"bad argument #1 to 'cat'", "table expected"}, function() return pr.cat(t) end)
        fails_with({"bad argument #1 to 'cat'", "element 2 is a number, not a tensor"},
                   function() return pr.cat({t, 3}) end)
        fails_with({"bad argument #1 to 'stack'", "non-empty list"}, function() return pr.stack({}) end)
        fails_with({"bad argument #2 to 'index_select'", "tensor or table of indices expected"},
                   function() return t:index_select(1, "x") end)
        fails_with({"bad argument #1 to 'no_grad'", "function expected, got number"},
                   function() return pr.no_grad(3) end)
        fails_with({"bad argument #1 to 'fill_'", "number expected"}, function() return t:fill_("a") end)
        fails_with({"bad argument #1 to 'seed'", "number expected"}, function() return pr.seed("a") end)
        fails_with({"bad argument #1 to 'seed'", "no integer representation"},
                   function() return pr.seed(1.5) end)
    end)

    it("bad dtypes and values that do not fit the dtype", function()
        fails_with({"bad argument #2 to 'zeros'", "invalid option 'int32'"},
                   function() return pr.zeros({2}, "int32") end)
        fails_with({"invalid option 'double'"}, function() return pr.ones(2, 3, "double") end)
        fails_with({"bad argument #1 to 'to'", "invalid option 'x'"},
                   function() return pr.ones(1):to("x") end)
        fails_with({"value is not an integer (int64 tensor) at [2], got 1.5"},
                   function() return pr.tensor({1, 1.5}, "int64") end)
        fails_with({"value out of range 0..255 (uint8 tensor) at [1], got 256"},
                   function() return pr.tensor({256}, "uint8") end)
        fails_with({"value is not an integer (int64 tensor)"},
                   function() return pr.full({2}, 0.5, "int64") end)
        local i = pr.zeros(2, "int64")
        fails_with({"bad argument #2 to 'set'", "not an integer"}, function() return i:set(1, 0.5) end)
        fails_with({"bad argument #1 to 'fill_'", "out of range 0..255"},
                   function() return pr.zeros(1, "uint8"):fill_(-1) end)
        fails_with({"requires_grad: only float32 tensors can require grad (this one is int64)"},
                   function() return i:requires_grad(true) end)
    end)

    it("nested tables that are not rectangular arrays of numbers", function()
        fails_with({"ragged nested table: sequence at [2] has length 1, expected 2"},
                   function() return pr.tensor({{1, 2}, {3}}) end)
        fails_with({"ragged nested table: sequence at [1][2] has length 3, expected 2"},
                   function() return pr.tensor({{{1, 2}, {3, 4, 5}}}) end)
        fails_with({"expected a number at [2], got string"}, function() return pr.tensor({1, "a"}) end)
        fails_with({"expected a table at [2], got number"}, function() return pr.tensor({{1}, 2}) end)
        fails_with({"expected a number at [1][2], got table"}, function() return pr.tensor({{1, {2}}}) end)
        fails_with({"nested table has more than 8 levels"},
                   function() return pr.tensor({{{{{{{{{1}}}}}}}}}) end)
        fails_with({"bad argument #1 to 'add'", "ragged"}, function() return pr.add({{1}, {2, 3}}, 1) end)
    end)
end)

describe("shapes", function()
    it("sizes must be non-negative integers and few enough", function()
        fails_with({"bad argument #2 to 'zeros'", "size -3 at position 2 is negative"},
                   function() return pr.zeros(2, -3) end)
        fails_with({"bad argument #1 to 'ones'", "size at position 1 is not an integer"},
                   function() return pr.ones({1.5}) end)
        fails_with({"shape has 9 dims, at most 8"},
                   function() return pr.zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}) end)
        fails_with({"shape has too many elements"}, function() return pr.zeros({2 ^ 40, 2 ^ 40}) end)
    end)

    it("a shape mismatch names both shapes", function()
        fails_with({"[2,3]", "[4]", "broadcast"}, function() return pr.ones(2, 3) + pr.ones(4) end)
        fails_with({"[2,3]", "[4]"}, function() return pr.ones(2, 3) * pr.ones(4) end)
        fails_with({"[2,3]", "[4,5]"}, function() return pr.matmul(pr.ones(2, 3), pr.ones(4, 5)) end)
        fails_with({"[2,3]", "[4,5]"}, function() return pr.ones(2, 3):mm(pr.ones(4, 5)) end)
        fails_with({"[2]", "[3]"}, function() return pr.where(pr.ones(2), pr.ones(3), 0) end)
        fails_with({"[2]", "[3]"}, function() return pr.ones(2):masked_select(pr.ones(3)) end)
        fails_with({"[2]", "[3]"}, function() return pr.ones(2):copy_(pr.ones(3)) end)
        fails_with({"[2]", "[3]"}, function() return pr.ones(2):add_(pr.ones(3)) end)
        fails_with({"[2,2]", "[3,3]"}, function() return pr.cat({pr.ones(2, 2), pr.ones(3, 3)}) end)
        fails_with({"[2]", "[3]"}, function() return pr.stack({pr.ones(2), pr.ones(3)}) end)
        fails_with({"shape [4,2] is invalid for a tensor of shape [2,3] (6 elements)"},
                   function() return pr.ones(2, 3):reshape(4, 2) end)
        fails_with({"shape [4,-1] is invalid for a tensor of shape [2,3]"},
                   function() return pr.ones(2, 3):view({4, -1}) end)
        fails_with({"only one size may be -1"}, function() return pr.ones(2, 3):view(-1, -1) end)
        fails_with({"view", "[3,2]", "use reshape"}, function() return pr.ones(2, 3):t():view(6) end)
        fails_with({"t: expects a tensor with at most 2 dims, got a 3-d tensor"},
                   function() return pr.ones(1, 1, 1):t() end)
        fails_with({"permute: expected 2 dims for a 2-d tensor, got 1"},
                   function() return pr.ones(2, 3):permute(1) end)
        fails_with({"permute: dim 1 repeated"}, function() return pr.ones(2, 3):permute(1, 1) end)
        fails_with({"expected 2 dims for a 2-d tensor, got 3"},
                   function() return pr.ones(2, 3):permute({1, 2, 3}) end)
        fails_with({"expand: target has 1 dims, fewer than the tensor's 2"},
                   function() return pr.ones(2, 3):expand(3) end)
        fails_with({"[2,3]"}, function() return pr.ones(2, 3):expand(4, 4) end)
        fails_with({"length of a 0-d tensor is undefined"}, function() return #pr.tensor(1) end)
    end)
end)

describe("dims", function()
    local m = pr.ones(2, 3)
    it("a bad dim names the dim and the tensor's dims", function()
        fails_with({"bad argument #1 to 'sum'", "dim 3 out of range for a 2-d tensor (expected 1..2 or -2..-1)"},
                   function() return m:sum(3) end)
        fails_with({"dim 0 out of range for a 2-d tensor"}, function() return m:size(0) end)
        fails_with({"dim -3 out of range for a 2-d tensor"}, function() return m:mean(-3) end)
        fails_with({"dim 3 out of range"}, function() return m:transpose(1, 3) end)
        fails_with({"dim 4 out of range for a 2-d tensor (expected 1..3 or -3..-1)"},
                   function() return m:unsqueeze(4) end)
        fails_with({"dim 5 out of range"}, function() return m:squeeze(5) end)
        fails_with({"dim 3 out of range"}, function() return m:max(3) end)
        fails_with({"dim 3 out of range"}, function() return m:argmin(3) end)
        fails_with({"dim 3 out of range"}, function() return m:sort(3) end)
        fails_with({"dim 3 out of range"}, function() return m:norm(2, 3) end)
        fails_with({"dim 9 out of range"}, function() return m:narrow(9, 1, 1) end)
        fails_with({"dim 3 out of range"}, function() return m:index_select(3, {1}) end)
        fails_with({"dim 3 out of range"}, function() return pr.cat({m, m}, 3) end)
        fails_with({"dim 4 out of range"}, function() return pr.stack({m, m}, 4) end)
        fails_with({"dim 1 out of range for a 0-d tensor"}, function() return pr.tensor(1):size(1) end)
        fails_with({"dim 3 out of range"}, function() return m:permute(3, 1) end)
    end)
end)

describe("indices", function()
    local m = pr.arange(6):view(2, 3)
    it("an index out of range names the index, the dim and its size", function()
        fails_with({"bad argument #2 to 'get'", "index 4 out of range for dim 2 of size 3"},
                   function() return m:get(1, 4) end)
        fails_with({"index 0 out of range for dim 1 of size 2"}, function() return m:get(0, 1) end)
        fails_with({"index -3 out of range for dim 1 of size 2"}, function() return m:get(-3, 1) end)
        fails_with({"get: expected 2 indices for a 2-d tensor, got 1"}, function() return m:get(1) end)
        fails_with({"set: expected 2 indices for a 2-d tensor, got 3"},
                   function() return m:set(1, 1, 1, 5) end)
        fails_with({"index 3 out of range for dim 1 of size 2"}, function() return m:set(3, 1, 5) end)
        fails_with({"set: expected 2 indices and a value"}, function() return m:set() end)
        fails_with({"index 3 out of range for dim 1 of size 2"}, function() return m:select(1, 3) end)
        fails_with({"index 7 out of range for dim 2 of size 3"},
                   function() return m:index_select(2, {1, 7}) end)
        fails_with({"index 0 out of range for dim 1 of size 2"},
                   function() return m:index_select(1, pr.tensor({0}, "int64")) end)
        fails_with({"index 1.5 at position 1 is not an integer"},
                   function() return m:index_select(1, pr.tensor({1.5})) end)
        fails_with({"index at position 2 is not an integer"},
                   function() return m:index_select(1, {1, "x"}) end)
        fails_with({"index tensor must be 1-d, got 2-d"},
                   function() return m:index_select(1, pr.ones(1, 1)) end)
        fails_with({"narrow: start 3 and length 2 out of range for dim 2 of size 3"},
                   function() return m:narrow(2, 3, 2) end)
        fails_with({"narrow: start 0 and length 1"}, function() return m:narrow(2, 0, 1) end)
        fails_with({"item: tensor has 6 elements, expected exactly 1"}, function() return m:item() end)
    end)

    it("selection arguments are checked", function()
        local x = pr.tensor({3, 1, 2})
        fails_with({"k=4 out of range for dim 1 of size 3"}, function() return x:topk(4) end)
        fails_with({"k=-1 out of range"}, function() return x:topk(-1) end)
        fails_with({"k=0 out of range for dim 1 of size 3"}, function() return x:kthvalue(0) end)
        fails_with({"k=4 out of range"}, function() return x:kthvalue(4) end)
        fails_with({"q must be in [0, 1], got 1.5"}, function() return x:quantile(1.5) end)
        fails_with({"q must be in [0, 1]"}, function() return x:quantile(0 / 0) end)
        fails_with({"p must be > 0"}, function() return x:norm(-1) end)
        fails_with({"unknown norm 'nuc'"}, function() return x:norm("nuc") end)
        fails_with({"sort: expects a tensor with at least 1 dim"}, function() return pr.tensor(1):sort() end)
        fails_with({"clamp: min 2.0"}, function() return x:clamp(2, 1) end)
    end)
end)

describe("creation arguments", function()
    it("are checked", function()
        fails_with({"randint: empty interval [5, 5)"}, function() return pr.randint(5, 5, {2}) end)
        fails_with({"bad argument #3 to 'randint'", "table expected"}, function() return pr.randint(1, 5, 3) end)
        fails_with({"step must be nonzero"}, function() return pr.arange(0, 1, 0) end)
        fails_with({"arange: bounds and step must be finite"}, function() return pr.arange(0, math.huge) end)
        fails_with({"number of points must be >= 0"}, function() return pr.linspace(0, 1, -1) end)
        fails_with({"size must be >= 0"}, function() return pr.eye(-1) end)
        fails_with({"unexpected argument (random tensors are float32)"}, function() return pr.rand(2, "int64") end)
    end)
end)

describe("autograd misuse", function()
    it("is an error, not a crash", function()
        fails_with({"backward: the tensor does not require grad"}, function() pr.ones(2):sum():backward() end)
        local w = pr.ones(2, 3):requires_grad(true)
        fails_with({"backward: output [2,3] is not a scalar"}, function() (w * 2):backward() end)
        fails_with({"[3]", "[2,3]"}, function() (w * 2):backward(pr.ones(3)) end)
        fails_with({"requires_grad: cannot turn off on a non-leaf tensor (use detach())"},
                   function() (w * 2):requires_grad(false) end)
        local y = (w * w):sum()
        y:backward()
        fails_with({"backward: the graph was already freed"}, function() return y:backward() end)
        -- no_grad passes the error on and restores the mode
        fails_with({"inner failure"}, pr.no_grad, function() error("inner failure") end)
        assert.is_true(pr.is_grad_enabled())
    end)
end)

describe("closed tensors", function()
    it("are an error wherever they are used", function()
        local t = pr.ones(2)
        getmetatable(t).__close(t)
        fails_with({"calling 'numel' on bad self (attempt to use a closed tensor)"},
                   function() return t:numel() end)
        fails_with({"attempt to use a closed tensor"}, function() return t + 1 end)
        fails_with({"attempt to use a closed tensor"}, function() return 1 + t end)
        fails_with({"attempt to use a closed tensor"}, function() return pr.cat({t}) end)
        fails_with({"attempt to use a closed tensor"}, function() return pr.ones(2):copy_(t) end)
        fails_with({"attempt to use a closed tensor"}, function() return pr.Tensor.get(t, 1) end)
        assert.is_true(pr.is_tensor(t))
    end)
end)

describe("no call can crash", function()
    -- Every method and library function with a spread of odd arguments: each call either works
    -- or raises a string message. The process surviving (also under ASan) is the other half.
    local odd = {
        {}, {nil}, {"x"}, {{}}, {{1, 2}}, {-1}, {0}, {1}, {2}, {3}, {100}, {1.5}, {0 / 0},
        {math.huge}, {true}, {1, 1}, {1, 100}, {2, -1}, {1, 1, 1}, {-1, -1, -1},
        {"float32"}, {{2, 2}}, {{-1}}, {function() end},
    }
    local function targets()
        return {
            pr.arange(6):view(2, 3), pr.tensor(1), pr.zeros(0), pr.ones(3, "int64"),
            pr.ones(2, 1, "uint8"), pr.arange(4):view(2, 2):t(),
            pr.ones(2):requires_grad(true),
        }
    end

    it("methods", function()
        local names = {}
        for name in pairs(pr.Tensor) do names[#names + 1] = name end
        table.sort(names)
        local calls = 0
        for _, name in ipairs(names) do
            for _, args in ipairs(odd) do
                for _, t in ipairs(targets()) do
                    local ok, err = pcall(pr.Tensor[name], t, table.unpack(args, 1, 3))
                    if not ok then
                        assert.are.equal("string", type(err), name)
                    end
                    calls = calls + 1
                end
                -- tensors as the extra argument too
                local ok, err = pcall(pr.Tensor[name], pr.ones(2, 3), pr.ones(3), table.unpack(args, 1, 2))
                if not ok then assert.are.equal("string", type(err), name) end
            end
        end
        assert.is_true(calls > 1000)
    end)

    it("library functions", function()
        -- the tensor part's own functions (others' parts write files or change thread counts)
        local mine = {"tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye",
                      "rand", "randn", "randint", "seed", "cat", "stack", "where", "is_tensor",
                      "set_grad_enabled", "is_grad_enabled"}
        for _, name in ipairs(mine) do
            local f = pr[name]
            assert.are.equal("function", type(f), name)
            do
                for _, args in ipairs(odd) do
                    local ok, err = pcall(f, table.unpack(args, 1, 3))
                    if not ok then
                        assert.are.equal("string", type(err), name)
                    end
                end
            end
        end
        pr.set_grad_enabled(true)
    end)
end)
