-- The pruning hot paths from Lua (issue: The pruning engine): pr.prune_core's scores,
-- thresholds and masks on hand-made tensors, with exactly the expected masks; 1-based dims;
-- argument errors that name the problem.
local pr = require "prunert"
local pc = pr.prune_core

local function flat(t)
    local out, v = {}, t:reshape({t:numel()}):totable()
    for i = 1, #v do out[i] = v[i] end
    return out
end

local function assert_flat(expected, t, tol)
    local got = flat(t)
    assert.are.equal(#expected, #got)
    for i = 1, #expected do
        local e, g = expected[i], got[i]
        if tol then
            assert.is_true(math.abs(e - g) <= tol, ("entry %d: expected %.9g, got %.9g"):format(i, e, g))
        else
            assert.are.equal(e, g, ("entry %d"):format(i))
        end
    end
end

describe("prune_core", function()
    it("is registered in the library", function()
        assert.is_table(pc, "pr.prune_core missing: init.c must call pr_open_prune")
    end)

    describe("scores", function()
        it("magnitude and Taylor", function()
            local w = pr.tensor({-2, 0.5, 0, 3})
            assert_flat({2, 0.5, 0, 3}, pc.magnitude(w))
            assert_flat({4, 0.25, 0, 9}, pc.magnitude(w, 2))
            local g = pr.tensor({-0.5, 0.25, 1, 0})
            assert_flat({1, 0.125, 0, 0}, pc.taylor(w, g))
            assert.has_error(function() pc.taylor(w, pr.tensor({1, 2})) end)
        end)

        it("accumulate_abs adds |g| in place and returns acc", function()
            local acc = pr.zeros({3})
            local r = pc.accumulate_abs(acc, pr.tensor({-1, 2, -3}))
            assert.are.equal(acc, r)
            pc.accumulate_abs(acc, pr.tensor({1, 1, 1}))
            assert_flat({2, 3, 4}, acc)
        end)

        it("structure norms with 1-based dims", function()
            -- conv [O=2, C=2, 1, 2]
            local w = pr.tensor({{{{1, -2}}, {{3, 0}}}, {{{0, 0}}, {{-1, 1}}}})
            assert_flat({6, 2}, pc.structure_norm(w, 1))          -- filters, L1
            assert_flat({3, 5}, pc.structure_norm(w, 2))          -- input channels
            assert_flat({math.sqrt(14), math.sqrt(2)}, pc.structure_norm(w, 1, 2), 1e-6)
            assert_flat({2, 3}, pc.structure_norm(w, 2, math.huge))
            assert_flat({5, 3}, pc.structure_norm(w, -1))
            assert.has_error(function() pc.structure_norm(w, 5) end)
        end)

        it("structure_reduce sums a Taylor score per filter", function()
            local s = pr.tensor({{{{1, 2}}, {{3, 4}}}, {{{0.5, 0}}, {{0, 1.5}}}})
            assert_flat({10, 2}, pc.structure_reduce(s, 1))
            assert_flat({2.5, 0.5}, pc.structure_reduce(s, 1, "mean"))
            assert_flat({4, 1.5}, pc.structure_reduce(s, 1, "max"))
            assert_flat({3.5, 8.5}, pc.structure_reduce(s, 2, "sum"))
            assert.has_error(function() pc.structure_reduce(s, 1, "median") end)
        end)

        it("depthwise_coupled: product of ||dw[i]|| and ||pw[:,i]||", function()
            local dw = pr.tensor({{{{1, 1}}}, {{{2, 0}}}, {{{0, 0.5}}}})      -- [3,1,1,2]
            local pw = pr.tensor({{1, 0, 2}, {1, 0, -2}})                        -- [2,3]
            assert_flat({4, 0, 2}, pc.depthwise_coupled(dw, pw))
            local ok, msg = pcall(pc.depthwise_coupled, dw, pr.tensor({{1, 2}, {3, 4}}))
            assert.is_false(ok)
            assert.truthy(msg:find("[3,1,1,2]", 1, true) and msg:find("[2,2]", 1, true))
        end)

        it("activity_accumulate: sum of |act| and zero counts per channel", function()
            local act = pr.tensor({{{0, 1}, {2, 0}}, {{0, 0}, {-3, 1}}})   -- [N=2,C=2,2]
            local sum, zeros = pr.zeros({2}), pr.zeros({2}, "int64")
            assert.are.equal(4, pc.activity_accumulate(act, sum, zeros))
            assert.are.equal(4, pc.activity_accumulate(act, nil, zeros))
            assert_flat({1, 6}, sum)
            assert.are.same({6, 2}, zeros:totable())
        end)
    end)

    describe("thresholds", function()
        it("threshold_amount prunes an exact count, ties by index", function()
            local s = pr.tensor({1, 0, 0, 0, 2, 0})
            local v, ties, count = pc.threshold_amount(s, 0.5)
            assert.are.equal(0, v)
            assert.are.equal(3, ties)
            assert.are.equal(3, count)
            assert_flat({1, 0, 0, 0, 1, 1}, pc.mask_from_scores(s, v, ties))
            local m, n = pc.mask_amount(s, 0)
            assert.are.equal(0, n)
            assert_flat({1, 1, 1, 1, 1, 1}, m)
            m, n = pc.mask_amount(s, 1)
            assert.are.equal(6, n)
            assert_flat({0, 0, 0, 0, 0, 0}, m)
            assert.has_error(function() pc.threshold_amount(s, 1.2) end)
        end)

        it("global differs from per-layer, and the floor holds", function()
            local a, b = pr.tensor({1, 2, 3, 4}), pr.tensor({{10, 20}, {30, 40}})
            assert_flat({0, 0, 1, 1}, (pc.mask_amount(a, 0.5)))
            assert_flat({0, 0, 1, 1}, (pc.mask_amount(b, 0.5)))
            local th, total = pc.threshold_global({a, b}, 0.5)
            assert.are.equal(4, total)
            assert_flat({0, 0, 0, 0}, pc.mask_from_scores(a, th[1]))
            assert_flat({1, 1, 1, 1}, pc.mask_from_scores(b, th[2]))
            th, total = pc.threshold_global({a, b}, 0.5, 1)
            assert.are.equal(4, total)
            assert.are.equal(3, th[1].count)
            assert.are.equal(1, th[2].count)
            assert_flat({0, 0, 0, 1}, pc.mask_from_scores(a, th[1]))
            assert_flat({0, 1, 1, 1}, pc.mask_from_scores(b, th[2]))
            th, total = pc.threshold_global({a, b}, 0.5, 3)
            assert.are.equal(2, total)
        end)

        it("mean_std gives mu - k*sigma", function()
            local mu, sd = pc.mean_std({pr.tensor({1, 2, 3, 4}), pr.tensor({5})})
            assert.is_true(math.abs(mu - 3) < 1e-12)
            assert.is_true(math.abs(sd - math.sqrt(2)) < 1e-12)
            local m = pc.mask_from_scores(pr.tensor({1, 2, 3, 4, 5}), mu - 1 * sd)
            assert_flat({0, 1, 1, 1, 1}, m)
        end)
    end)

    describe("masks", function()
        it("structure_expand spreads a filter or channel mask", function()
            local w = pr.zeros({2, 2, 1, 2})
            assert_flat({1, 1, 1, 1, 0, 0, 0, 0}, pc.structure_expand(pr.tensor({1, 0}), w, 1))
            assert_flat({1, 1, 0, 0, 1, 1, 0, 0}, pc.structure_expand(pr.tensor({1, 0}), w, 2))
            assert_flat({1, 0, 1, 1, 0, 1}, pc.structure_expand(pr.tensor({1, 0, 1}), {2, 3}, 2))
            assert.has_error(function() pc.structure_expand(pr.tensor({1, 0, 1}), {2, 3}, 1) end)
        end)

        it("mask_nm keeps the N largest of every M along the input dim", function()
            local s = pr.tensor({{1, 5, 2, 4, 0, 0, 3, 0}, {-1, -5, -2, -4, 7, 7, 7, 7}})
            assert_flat({0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0}, pc.mask_nm(s, 2, 4))
            assert_flat({0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}, pc.mask_nm(s, 1, 2, 2))
            local ok, msg = pcall(pc.mask_nm, pr.zeros({2, 6}), 2, 4)
            assert.is_false(ok)
            assert.truthy(msg:find("M=4", 1, true) and msg:find("size 6", 1, true))
        end)

        it("mask_blocks zeroes the weakest blocks", function()
            local w = pr.tensor({{1, -1, 0, 1}, {1, 1, 0, 0}, {0, 0, 5, -5}, {1, 0, 0, 0}})
            assert_flat({1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1},
                        pc.mask_blocks(w, 2, 2, 0.5))
            local ok, msg = pcall(pc.mask_blocks, pr.zeros({3, 4}), 2, 2, 0.5)
            assert.is_false(ok)
            assert.truthy(msg:find("2x2", 1, true) and msg:find("[3,4]", 1, true))
        end)

        it("mask_apply, count_zeros, mask_random", function()
            local w = pr.tensor({1, -2, 3, 4})
            assert.are.equal(w, pc.mask_apply(w, pr.tensor({1, 0, 0, 1})))
            assert_flat({1, 0, 0, 4}, w)
            assert.are.equal(2, pc.count_zeros(w))
            pr.seed(3)
            local r1 = pc.mask_random({10, 10}, 0.25)
            pr.seed(3)
            local r2 = pc.mask_random(r1, 0.25)
            assert.are.equal(25, pc.count_zeros(r1))
            assert.are.same(flat(r1), flat(r2))
            assert.has_error(function() pc.mask_apply(w, pr.tensor({1, 0})) end)
        end)

        it("grad_clip_mask_ compares |g|, not the signed value", function()
            local g = pr.tensor({-0.5, 1e-4, -1e-4, 2e-3, 0})
            assert.are.equal(3, pc.grad_clip_mask_(g, 1e-3))
            assert_flat({-0.5, 0, 0, 2e-3, 0}, g, 1e-9)
        end)
    end)
end)
