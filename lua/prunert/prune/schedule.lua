-- prunert.prune.schedule: when to prune and how much.
--
--   one_shot(model, opts)                        prune once (= prune.apply)
--   iterative(model, data, {rounds, final, prune, fine_tune})
--   agp{initial, final, start, steps, every, prune}   gradual (Zhu and Gupta 2017), as fit's on_batch
--   layer_by_layer(model, data, {prune, fine_tune, layers})
--   fine_tune_optimizer(model, {lr, momentum, freeze, slow, slow_factor})
local prune = require "prunert.prune"
local optim = require "prunert.optim"
local train = require "prunert.train"

local schedule = {}

local function copy(t)
    local c = {}
    for k, v in pairs(t or {}) do c[k] = v end
    return c
end

function schedule.one_shot(model, opts) return prune.apply(model, opts) end

-- Optimizer for fine-tuning with chosen layers frozen or slowed: `freeze` and `slow` are lists
-- of parameter names or module paths ("0.weight" or "0"); slowed ones get lr * slow_factor.
function schedule.fine_tune_optimizer(model, o)
    o = o or {}
    local lr = o.lr or 0.01
    local function listed(list, name)
        for _, pat in ipairs(list or {}) do
            if name == pat or name:sub(1, #pat + 1) == pat .. "." then return true end
        end
        return false
    end
    local normal, slow, frozen = {}, {}, {}
    for name, p in model:named_parameters() do
        if listed(o.freeze, name) then frozen[#frozen + 1] = p
        elseif listed(o.slow, name) then slow[#slow + 1] = p
        else normal[#normal + 1] = p end
    end
    local groups = {}
    if #normal > 0 then groups[#groups + 1] = {params = normal} end
    if #slow > 0 then groups[#groups + 1] = {params = slow, lr = lr * (o.slow_factor or 0.1)} end
    if #frozen > 0 then groups[#groups + 1] = {params = frozen, frozen = true} end
    local kind = o.optimizer or "SGD"
    local opts = {lr = lr}
    if kind == "SGD" then opts.momentum = o.momentum or 0.9 end
    opts.weight_decay = o.weight_decay
    return optim[kind](groups, opts)
end

local function fine_tune(model, data, ft)
    if not ft or (ft.epochs or 0) == 0 then return nil end
    local o = copy(ft)
    if not o.optimizer or type(o.optimizer) == "table" and not o.optimizer.step then
        o.optimizer = schedule.fine_tune_optimizer(model, ft)
    end
    o.freeze, o.slow, o.slow_factor, o.lr, o.momentum, o.weight_decay = nil, nil, nil, nil, nil, nil
    return train.fit(model, data, o)
end

-- k rounds of (prune, fine-tune). Round r prunes to 1 - (1 - final)^(r / k) of each target,
-- so every round removes the same fraction of what is left. Returns one record per round.
function schedule.iterative(model, data, o)
    local rounds, final = o.rounds or 3, o.final or o.amount
    if math.type(rounds) ~= "integer" or rounds < 1 then error("iterative: rounds must be a positive integer", 2) end
    if type(final) ~= "number" or final < 0 or final > 1 then error("iterative: final must be in [0, 1]", 2) end
    local history = {}
    for r = 1, rounds do
        local p = copy(o.prune)
        p.amount = 1 - (1 - final) ^ (r / rounds)
        local rep = prune.apply(model, p)
        local fit = fine_tune(model, data, o.fine_tune)
        local rec = {round = r, amount = p.amount, sparsity = rep.sparsity, fit = fit}
        if o.val then rec.val_loss, rec.val_accuracy = train.evaluate(model, o.val) end
        history[#history + 1] = rec
        if o.on_round then o.on_round(rec, model) end
    end
    return history
end

-- AGP: s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3 at t = t0, t0 + dt, ..., t0 + n*dt.
-- Returns a schedule object; pass schedule.on_batch as fit's on_batch. Steps count optimizer
-- steps from 1, so start = 0 prunes at the first step.
function schedule.agp(o)
    local si, sf = o.initial or 0, o.final
    local t0, n, dt = o.start or 0, o.steps, o.every or 1
    if type(sf) ~= "number" or sf < 0 or sf > 1 or si < 0 or si > sf then
        error("agp: need 0 <= initial <= final <= 1", 2)
    end
    if math.type(n) ~= "integer" or n < 1 or math.type(dt) ~= "integer" or dt < 1 then
        error("agp: steps and every must be positive integers", 2)
    end
    local s = {history = {}, prune_opts = copy(o.prune)}
    function s.sparsity_at(t)
        if t < t0 then return 0 end
        local k = math.min(n, (t - t0) // dt)
        return sf + (si - sf) * (1 - k / n) ^ 3
    end
    function s.is_pruning_step(t)
        return t >= t0 and (t - t0) % dt == 0 and (t - t0) // dt <= n
    end
    function s.on_batch(step, _, model)
        local t = step - 1
        if not s.is_pruning_step(t) then return end
        local p = copy(s.prune_opts)
        p.amount = s.sparsity_at(t)
        local rep = prune.apply(model, p)
        s.history[#s.history + 1] = {step = step, target = p.amount, sparsity = rep.sparsity}
    end
    s.last_step = t0 + n * dt + 1
    return s
end

-- One target at a time: prune it, fine-tune, move on (seed 003 found this beats one shot).
function schedule.layer_by_layer(model, data, o)
    local targets = prune.targets(model, {layers = o.layers, exclude = o.exclude})
    local history = {}
    for _, t in ipairs(targets) do
        local p = copy(o.prune)
        p.layers = {t.name}
        p.exclude = nil
        local rep = prune.apply(model, p)
        local fit = fine_tune(model, data, o.fine_tune)
        local rec = {layer = t.name, sparsity = rep.layers[1].sparsity, fit = fit}
        if o.val then rec.val_loss, rec.val_accuracy = train.evaluate(model, o.val) end
        history[#history + 1] = rec
        if o.on_layer then o.on_layer(rec, model) end
    end
    return history
end

return schedule
