-- prunert.prune: pruning as Lua policy over C hot paths.
--
--   pr.prune.apply(model, {criterion = "l1", amount = 0.5, scope = "layer" | "global",
--                          granularity = "element" | "filter" | "neuron" | "channel"
--                                        | {block = {1, 4}} | {n = 2, m = 4},
--                          threshold = t, k = k, exclude = {...}, layers = {...},
--                          data = dataset, batches = n, min_keep = n})
--
-- A criterion gives each target weight a score (per element, or per structure: filter, neuron,
-- input channel); a threshold mode turns scores into masks (a target amount per layer or across
-- layers, an absolute value, or mu - k*sigma); masks are multiplied into the parameters' masks,
-- so what was pruned stays pruned. Scores, selection and masks are C calls
-- (runtime/core/prune); a user criterion is a Lua function returning a score tensor and gets
-- the same selection, masking and bookkeeping as the built-ins.
local core = require "prunert.core"

local prune = {}
local pc = core.prune_core

-- ---- targets ----

local PRUNABLE = {Conv2d = true, Linear = true}

local function match_any(list, name, path)
    for _, pat in ipairs(list) do
        if pat == name or pat == path then return true end
    end
    return false
end

-- The weights a call prunes: every Conv2d/Linear weight (in model order), less `exclude`,
-- restricted to `layers` when given. Names and module paths are both accepted ("0.weight", "0").
-- Each target: {name, path, module, kind, weight, bias, parent, index}.
function prune.targets(model, opts)
    opts = opts or {}
    local list = {}
    local parents = {} -- child path -> {container, index}: paths are unique, userdata are not
    for path, m in model:named_modules() do
        for i, _ in ipairs(m:children()) do
            parents[path == "" and tostring(i - 1) or (path .. "." .. (i - 1))] = {m, i}
        end
    end
    for path, m in model:named_modules() do
        local kind = m:kind()
        if PRUNABLE[kind] then
            local name = (path == "" and "" or path .. ".") .. "weight"
            local keep = true
            if opts.layers then keep = match_any(opts.layers, name, path) end
            if keep and opts.exclude then
                if type(opts.exclude) == "function" then keep = not opts.exclude(name, m)
                else keep = not match_any(opts.exclude, name, path) end
            end
            if keep then
                local params = m:own_params()
                local par = parents[path]
                list[#list + 1] = {name = name, path = path, module = m, kind = kind,
                                   weight = params[1][2], bias = params[2] and params[2][2] or nil,
                                   parent = par and par[1], index = par and par[2]}
            end
        end
    end
    return list
end

-- The module right after `t` in its container, if it is of one of `kinds`.
local function next_sibling(t, kinds)
    if not t.parent then return nil end
    local sib = t.parent:children()[t.index + 1]
    if sib and kinds[sib:kind()] then return sib end
    return nil
end

local ACTIVATIONS = {ReLU = true, LeakyReLU = true, Sigmoid = true, Tanh = true}
local BATCHNORMS = {BatchNorm1d = true, BatchNorm2d = true}

-- ---- granularity ----

local function parse_granularity(g)
    if g == nil or g == "element" or g == "weight" then return {kind = "element"} end
    if g == "filter" or g == "neuron" or g == "row" or g == "output" then return {kind = "structure", dim = 1} end
    if g == "channel" or g == "input" or g == "column" then return {kind = "structure", dim = 2} end
    if type(g) == "table" and g.block then
        local bh, bw = g.block[1], g.block[2]
        if math.type(bh) ~= "integer" or math.type(bw) ~= "integer" or bh < 1 or bw < 1 then
            error("prune: block must be {rows, cols} of positive integers", 3)
        end
        return {kind = "block", bh = bh, bw = bw}
    end
    if type(g) == "table" and g.n and g.m then
        if math.type(g.n) ~= "integer" or math.type(g.m) ~= "integer" or g.n < 0 or g.n > g.m then
            error("prune: N:M needs integers 0 <= n <= m", 3)
        end
        return {kind = "nm", n = g.n, m = g.m}
    end
    error("prune: unknown granularity '" .. tostring(g) .. "' (element, filter, neuron, channel, {block = {r, c}}, {n = 2, m = 4})", 3)
end

-- ---- data-driven statistics (gradients and activations), gathered once per call ----

local function loss_of(opts)
    local l = opts.loss
    if l == nil or l == "cross_entropy" then return core.cross_entropy end
    if l == "mse" then return core.mse_loss end
    if l == "nll" then return core.nll_loss end
    if type(l) == "function" then return l end
    error("prune: unknown loss '" .. tostring(l) .. "'", 3)
end

local function need_data(opts, what)
    if not opts.data then
        error("prune: criterion '" .. what .. "' needs data = a data set to measure on", 4)
    end
end

-- Accumulates |g| and |w*g| over `batches` batches (default 8) without touching the weights.
-- Gradients left from training are cleared first and the model's .grad is clear afterwards
-- (as after zero_grad): the next training step starts from zero either way.
local function gather_gradients(model, targets, opts)
    local lf = loss_of(opts)
    local acc_g, acc_t = {}, {}
    for i, t in ipairs(targets) do
        acc_g[i] = core.zeros(table.unpack(t.weight:shape()))
        acc_t[i] = core.zeros(table.unpack(t.weight:shape()))
    end
    local n = 0
    local was = model:is_training()
    model:train(opts.train_mode == true)
    for x, y in opts.data:batches{batch = opts.batch or 128} do
        model:zero_grad()
        lf(model(x), y):backward()
        for i, t in ipairs(targets) do
            local g = t.weight:grad()
            if g then
                pc.accumulate_abs(acc_g[i], g)
                acc_t[i]:add_(pc.taylor(t.weight, g))
            end
        end
        n = n + 1
        if n >= (opts.batches or 8) then break end
    end
    model:train(was)
    model:zero_grad()
    return acc_g, acc_t, n
end

-- Mean activation and APoZ per output unit of each target, measured after its activation when
-- one follows it (ReLU: APoZ is then the fraction of zeros, as Hu et al. 2016).
local function gather_activity(model, targets, opts)
    local probes = {}
    for i, t in ipairs(targets) do probes[i] = next_sibling(t, ACTIVATIONS) or t.module end
    for _, m in ipairs(probes) do m:collect_activity(true) end
    local was = model:is_training()
    model:eval()
    local prev = core.set_grad_enabled(false)
    local n = 0
    local ok, err = pcall(function()
        for x in opts.data:batches{batch = opts.batch or 256} do
            model(x)
            n = n + 1
            if n >= (opts.batches or 8) then break end
        end
    end)
    core.set_grad_enabled(prev)
    model:train(was)
    local stats = {}
    for i, m in ipairs(probes) do
        local s, z, count = m:activity()
        m:collect_activity(false)
        stats[i] = s and {mean = s / count, apoz = z:float() / count} or nil
    end
    if not ok then error(err, 0) end
    return stats
end

-- ---- criteria ----
-- A criterion is a table {name, needs, element = f(ctx), structure = f(ctx, dim)} (dim 1 =
-- output units, 2 = input channels, Lua's 1-based counting) or a plain
-- function f(ctx) returning element scores (the weight's shape) or structure scores (a 1-D
-- tensor of the pruned dim's size). ctx = {weight, bias, name, module, grad_abs, taylor,
-- activity, bn, granularity}. Larger score = more important.

local criteria = {}
prune.criteria = criteria

local function norm_criterion(name, p)
    return {
        name = name,
        element = function(ctx) return pc.magnitude(ctx.weight, p) end,
        structure = function(ctx, dim) return pc.structure_norm(ctx.weight, dim, p) end,
    }
end
criteria.l1 = norm_criterion("l1", 1)
criteria.magnitude = criteria.l1
criteria.l2 = norm_criterion("l2", 2)

criteria.gradient = {
    name = "gradient", needs = "gradients",
    element = function(ctx) return ctx.grad_abs end,
    structure = function(ctx, dim) return pc.structure_reduce(ctx.grad_abs, dim, "sum") end,
}

criteria.taylor = {
    name = "taylor", needs = "gradients",
    element = function(ctx) return ctx.taylor end,
    structure = function(ctx, dim) return pc.structure_reduce(ctx.taylor, dim, "sum") end,
}

local function structure_only(name, f)
    return {
        name = name,
        element = function() error("prune: criterion '" .. name .. "' scores whole output units; use granularity = \"filter\" or \"neuron\"", 0) end,
        structure = function(ctx, dim)
            if dim ~= 1 then error("prune: criterion '" .. name .. "' scores output units, not input channels", 0) end
            return f(ctx)
        end,
    }
end

criteria.activity = structure_only("activity", function(ctx) return ctx.activity.mean end)
criteria.activity.needs = "activity"
-- High APoZ = mostly zero = unimportant, so the score is 1 - APoZ.
criteria.apoz = structure_only("apoz", function(ctx) return ctx.activity.apoz:neg() + 1 end)
criteria.apoz.needs = "activity"

criteria.bn_gamma = structure_only("bn_gamma", function(ctx)
    if not ctx.bn then
        error("prune: criterion 'bn_gamma' needs a BatchNorm right after " .. ctx.name, 0)
    end
    return ctx.bn:own_params()[1][2]:abs()
end)
criteria.bn_scale = criteria.bn_gamma

criteria.random = {
    name = "random",
    element = function(ctx) return core.rand(table.unpack(ctx.weight:shape())) end,
    structure = function(ctx, dim) return core.rand(ctx.weight:size(dim + 1)) end,
}

local function resolve_criterion(c)
    if c == nil then return criteria.l1 end
    if type(c) == "string" then
        local found = criteria[c]
        if not found then
            local names = {}
            for k in pairs(criteria) do names[#names + 1] = k end
            table.sort(names)
            error("prune: unknown criterion '" .. c .. "' (" .. table.concat(names, ", ") .. ")", 3)
        end
        return found
    end
    if type(c) == "function" then
        return {name = "custom", custom = c}
    end
    if type(c) == "table" and (c.element or c.structure) then return c end
    error("prune: criterion must be a name, a function or a criterion table", 3)
end

-- ---- scoring one target ----

local NEG = -3.0e38 -- below any real score: already-pruned entries are ranked first

local function same_shape(a, b)
    local sa, sb = a:shape(), b:shape()
    if #sa ~= #sb then return false end
    for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
    return true
end

local function score_target(crit, ctx, gran)
    local s
    if crit.custom then
        s = crit.custom(ctx)
        if not (type(s) == "userdata" and s.shape) then
            error("prune: custom criterion for " .. ctx.name .. " must return a tensor", 0)
        end
        local want_elem = gran.kind ~= "structure"
        if want_elem and not same_shape(s, ctx.weight) then
            error(string.format("prune: custom criterion for %s returned [%s], expected the weight's shape [%s]",
                ctx.name, table.concat(s:shape(), ","), table.concat(ctx.weight:shape(), ",")), 0)
        elseif not want_elem and (s:dim() ~= 1 or s:size(1) ~= ctx.weight:size(gran.dim)) then
            error(string.format("prune: custom criterion for %s returned [%s], expected [%d] (one score per unit)",
                ctx.name, table.concat(s:shape(), ","), ctx.weight:size(gran.dim)), 0)
        end
    elseif gran.kind == "structure" then
        s = crit.structure(ctx, gran.dim)
    else
        s = crit.element(ctx)
    end
    if s:dtype() ~= "float32" then s = s:float() end
    -- Entries (or units) already pruned rank first, so an amount counts them and never
    -- revives them.
    local mask = ctx.weight:mask()
    if mask then
        local alive = mask
        if gran.kind == "structure" then
            alive = pc.structure_norm(mask, gran.dim, 1):gt(0)
        end
        s = core.where(alive, s, core.full({1}, NEG))
    end
    return s
end

-- ---- thresholds and masks ----

local function amount_for(opts, t)
    local a = opts.amount
    if type(a) == "table" then a = a[t.name] or a[t.path] or a.default or 0 end
    if a == nil then return nil end
    if type(a) ~= "number" or a < 0 or a > 1 or a ~= a then
        error(string.format("prune: amount for %s must be in [0, 1], got %s", t.name, tostring(a)), 0)
    end
    return a
end

local function mask_for(t, scores, gran, th)
    if gran.kind == "structure" then
        local unit = pc.mask_from_scores(scores, th.value, th.ties)
        return pc.structure_expand(unit, t.weight:shape(), gran.dim), unit
    end
    return pc.mask_from_scores(scores, th.value, th.ties)
end

local function and_mask(p, m)
    local old = p:mask()
    p:set_mask(old and old * m or m)
end

-- Combines the new mask with the parameter's existing one. For output units the bias goes too,
-- and so do the scale and shift of a BatchNorm right after: a removed filter must not leave a
-- constant behind, and then compact() can take the channel out.
local function commit(t, mask, unit, gran)
    and_mask(t.weight, mask)
    if unit and gran.dim == 1 then
        if t.bias then and_mask(t.bias, unit) end
        local bn = next_sibling(t, BATCHNORMS)
        if bn then
            for _, pt in ipairs(bn:own_params()) do and_mask(pt[2], unit) end
        end
    end
end

local function count_zeros(t) return pc.count_zeros(t) end

-- prune.apply(model, opts) -> report {layers = {{name, numel, zeros, sparsity}}, total, zeros, sparsity}
function prune.apply(model, opts)
    opts = opts or {}
    local crit = resolve_criterion(opts.criterion)
    local gran = parse_granularity(opts.granularity)
    local scope = opts.scope or "layer"
    if scope ~= "layer" and scope ~= "global" then
        error("prune: scope must be \"layer\" or \"global\", got " .. tostring(scope), 2)
    end
    local modes = (opts.amount ~= nil and 1 or 0) + (opts.threshold ~= nil and 1 or 0) + (opts.k ~= nil and 1 or 0)
    if gran.kind == "nm" then
        if modes ~= 0 then error("prune: an N:M pattern fixes the amount (n of every m); give no amount, threshold or k", 2) end
    elseif modes ~= 1 then
        error("prune: give exactly one of amount, threshold (absolute) or k (mu - k*sigma)", 2)
    end
    if opts.amount ~= nil and type(opts.amount) ~= "table" then
        if type(opts.amount) ~= "number" or opts.amount < 0 or opts.amount > 1 or opts.amount ~= opts.amount then
            error("prune: amount must be in [0, 1], got " .. tostring(opts.amount), 2)
        end
    end
    if (gran.kind == "block" or gran.kind == "nm") and scope == "global" then
        error("prune: block and N:M patterns are chosen per layer; use scope = \"layer\"", 2)
    end
    local targets = prune.targets(model, opts)
    if #targets == 0 then error("prune: no Conv2d or Linear weights to prune (check layers/exclude)", 2) end

    local grad_abs, taylor, activity
    if crit.needs == "gradients" then
        need_data(opts, crit.name)
        grad_abs, taylor = gather_gradients(model, targets, opts)
    elseif crit.needs == "activity" then
        need_data(opts, crit.name)
        activity = gather_activity(model, targets, opts)
    elseif crit.custom and opts.data and opts.gather then
        grad_abs, taylor = gather_gradients(model, targets, opts)
        activity = gather_activity(model, targets, opts)
    end

    local scores = {}
    for i, t in ipairs(targets) do
        local ctx = {weight = t.weight, bias = t.bias, name = t.name, module = t.module, kind = t.kind,
                     grad_abs = grad_abs and grad_abs[i], taylor = taylor and taylor[i],
                     activity = activity and activity[i], bn = next_sibling(t, BATCHNORMS),
                     granularity = gran}
        if crit.needs == "activity" and not ctx.activity then
            error("prune: no activity was recorded for " .. t.name, 2)
        end
        local ok, s = pcall(score_target, crit, ctx, gran)
        if not ok then error(s, 2) end
        scores[i] = s
    end

    if gran.kind == "nm" or gran.kind == "block" then
        for i, t in ipairs(targets) do
            local s = scores[i]
            local mask
            if gran.kind == "nm" then
                -- along the flattened input (C*kh*kw for a conv), where kernels read consecutively
                local s2 = s:contiguous():view(s:size(1), -1)
                local ok, m2 = pcall(pc.mask_nm, s2, gran.n, gran.m, 2)
                if not ok then
                    error(string.format("prune: %d:%d needs %s's input size %d to be a multiple of %d",
                        gran.n, gran.m, t.name, s2:size(2), gran.m), 2)
                end
                mask = m2:view(table.unpack(t.weight:shape()))
            else
                local w2 = s:view(s:size(1), -1)
                local a = amount_for(opts, t)
                if a == nil then error("prune: block pruning needs amount", 2) end
                mask = pc.mask_blocks(w2, gran.bh, gran.bw, a):view(table.unpack(t.weight:shape()))
            end
            commit(t, mask, nil, gran)
        end
    else
        local ths = {}
        if opts.threshold ~= nil then
            for i = 1, #targets do ths[i] = {value = opts.threshold, ties = 0} end
        elseif opts.k ~= nil then
            if scope == "global" then
                local mu, sd = pc.mean_std(scores)
                for i = 1, #targets do ths[i] = {value = mu - opts.k * sd, ties = 0} end
            else
                for i = 1, #targets do
                    local mu, sd = pc.mean_std({scores[i]})
                    ths[i] = {value = mu - opts.k * sd, ties = 0}
                end
            end
        elseif scope == "global" then
            if type(opts.amount) == "table" then error("prune: a global scope takes one amount", 2) end
            ths = pc.threshold_global(scores, opts.amount, opts.min_keep or 1)
        else
            for i, t in ipairs(targets) do
                local value, ties = pc.threshold_amount(scores[i], amount_for(opts, t))
                ths[i] = {value = value, ties = ties}
            end
        end
        for i, t in ipairs(targets) do
            local mask, unit = mask_for(t, scores[i], gran, ths[i])
            commit(t, mask, unit, gran)
        end
    end
    return prune.summary(model, targets)
end

-- Per-target counts after pruning.
function prune.summary(model, targets)
    targets = targets or prune.targets(model)
    local rep = {layers = {}, total = 0, zeros = 0}
    for _, t in ipairs(targets) do
        local n = t.weight:numel()
        local z = count_zeros(t.weight)
        rep.layers[#rep.layers + 1] = {name = t.name, numel = n, zeros = z, sparsity = n > 0 and z / n or 0}
        rep.total, rep.zeros = rep.total + n, rep.zeros + z
    end
    rep.sparsity = rep.total > 0 and rep.zeros / rep.total or 0
    return rep
end

-- Removes every mask (the weights stay as they are: pruned ones remain zero until trained).
function prune.remove_masks(model)
    for _, p in model:named_parameters() do p:set_mask(nil) end
end

-- Seed 000's "gradient clipping" as a training hook: after backward, entries of each target
-- gradient with |g| < threshold are zeroed so those weights are not updated this step. Use as
-- fit's before_step (or call it yourself between backward and step). The returned object
-- counts how many updates were suppressed.
function prune.gradient_mask(model, opts)
    opts = opts or {}
    local thr = opts.threshold or 1e-3
    local targets = opts.all and model:parameters() or nil
    if not targets then
        targets = {}
        for _, t in ipairs(prune.targets(model, opts)) do targets[#targets + 1] = t.weight end
    end
    local hook = {suppressed = 0, seen = 0}
    function hook.apply()
        for _, p in ipairs(targets) do
            local g = p:grad()
            if g then
                hook.suppressed = hook.suppressed + pc.grad_clip_mask_(g, thr)
                hook.seen = hook.seen + g:numel()
            end
        end
    end
    return hook
end

-- Structural pruning (prune/structure.lua): groups, structured, compact, fold_bn.
for _, name in ipairs({"groups", "structured", "compact", "fold_bn"}) do
    prune[name] = function(...) return require("prunert.prune.structure")[name](...) end
end

-- Submodules: schedules, sensitivity analysis, reports (loaded on first use).
return setmetatable(prune, {
    __index = function(t, k)
        local ok, m = pcall(require, "prunert.prune." .. k)
        if ok then rawset(t, k, m) return m end
        return nil
    end,
})
