-- Reverse-mode autograd as a user meets it (issue: autograd, layers, masks).
local pr = require "prunert"

local function close(a, b, tol) return math.abs(a - b) <= (tol or 1e-5) end

describe("autograd", function()
    it("computes gradients through broadcasting, matmul and reductions", function()
        local w = pr.tensor({{1, 2}, {3, 4}}):requires_grad(true)
        local b = pr.tensor({0.5, -0.5}):requires_grad(true)
        local x = pr.tensor({{1, 1}, {2, 0}, {0, 3}})
        local y = (x:matmul(w) + b):relu():sum()
        y:backward()
        -- d/dw sum(relu(xw + b)) = x^T (1 where positive): all positive here
        assert.are.same({{3, 3}, {4, 4}}, w:grad():totable())
        assert.are.same({3, 3}, b:grad():totable())
    end)

    it("accumulates across backward calls until zero_grad", function()
        local p = pr.tensor({2.0}):requires_grad(true)
        ;(p * p):sum():backward()
        ;(p * p):sum():backward()
        assert.is_true(close(p:grad():item(), 8))
        p:zero_grad()
        ;(p * 3):sum():backward()
        assert.is_true(close(p:grad():item(), 3))
    end)

    it("backward from a non-scalar needs a gradient of its shape", function()
        local p = pr.tensor({1, 2, 3}):requires_grad(true)
        local y = p * 2
        assert.has_error(function() y:backward() end,
            "backward: output [3] is not a scalar; pass a gradient of the same shape")
        y:backward(pr.tensor({1, 0, 2}))
        assert.are.same({2, 0, 4}, p:grad():totable())
    end)

    it("frees the graph after backward", function()
        local p = pr.tensor({1.0}):requires_grad(true)
        local y = (p:exp() * 2):sum()
        y:backward()
        assert.has_error(function() y:backward() end,
            "backward: the graph was already freed by an earlier backward")
    end)

    it("records nothing under no_grad, in both its forms", function()
        local p = pr.ones(2):requires_grad(true)
        local y = pr.no_grad(function() return p * 2 end)
        assert.is_false(y:requires_grad())
        do
            local g <close> = pr.no_grad_scope()
            assert.is_false((p + 1):requires_grad())
        end
        assert.is_true((p + 1):requires_grad())
        local d = (p * 3):detach()
        assert.is_false(d:requires_grad())
    end)

    -- 100000 nodes: recursion that deep (in the release or the backward walk) would overflow
    -- the C stack and kill the process, so getting to the assertions is most of the test.
    it("frees a very long graph that never saw a backward without deep recursion", function()
        local x = pr.ones(4):requires_grad(true)
        local y = x
        for _ = 1, 100000 do y = y * 1.0 end
        assert.are.same({1, 1, 1, 1}, y:totable())
        y = nil
        collectgarbage()
        collectgarbage()
        -- the leaf is still usable once its graph is gone
        ;(x * 2):sum():backward()
        assert.are.same({2, 2, 2, 2}, x:grad():totable())
    end)

    it("walks a very long graph backward without deep recursion", function()
        local x = pr.ones(3):requires_grad(true)
        local y = x
        for _ = 1, 100000 do y = y * 1.0 end
        y:sum():backward()
        assert.are.same({1, 1, 1}, x:grad():totable())
    end)
end)
