-- prunert.prune.sensitivity: prune one layer alone at a range of amounts, evaluate, restore.
--
--   local sens = pr.prune.sensitivity(model, val_data, {amounts = {0.1, ..., 0.9},
--                                     criterion = "l1", granularity = "filter", csv = path, json = path})
--   local amounts = pr.prune.sensitivity.amounts(sens, {budget = 0.01})
--
-- Returns {baseline = {loss, accuracy}, layers = {{name, results = {{amount, loss, accuracy}}}}}.
local core = require "prunert.core"
local prune = require "prunert.prune"
local train = require "prunert.train"

local sensitivity = {}

local DEFAULT_AMOUNTS = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}

-- Weights and masks of every parameter, to put back after each trial.
local function snapshot(model)
    local s = {}
    for name, p in model:named_parameters() do
        local m = p:mask()
        s[#s + 1] = {p = p, value = p:clone(), mask = m and m:clone()}
    end
    return s
end

local function restore(s)
    for _, e in ipairs(s) do
        e.p:set_mask(nil)
        e.p:copy_(e.value)
        if e.mask then e.p:set_mask(e.mask) end
    end
end

local function write_file(path, text)
    local tmp = path .. ".tmp"
    local f, err = io.open(tmp, "w")
    if not f then error("sensitivity: " .. err, 0) end
    f:write(text)
    f:close()
    local ok, err2 = os.rename(tmp, path)
    if not ok then os.remove(tmp) error("sensitivity: " .. err2, 0) end
end

function sensitivity.to_csv(sens)
    local lines = {"layer,amount,loss,accuracy"}
    for _, l in ipairs(sens.layers) do
        for _, r in ipairs(l.results) do
            lines[#lines + 1] = string.format("%s,%.4f,%.6f,%.6f", l.name, r.amount, r.loss, r.accuracy or -1)
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

local function run(model, data, o)
    o = o or {}
    local amounts = o.amounts or DEFAULT_AMOUNTS
    for _, a in ipairs(amounts) do
        if type(a) ~= "number" or a < 0 or a > 1 then error("sensitivity: amounts must be in [0, 1]", 3) end
    end
    local base_loss, base_acc = train.evaluate(model, data, {loss = o.loss, batch = o.batch})
    local result = {baseline = {loss = base_loss, accuracy = base_acc}, layers = {},
                    criterion = type(o.criterion) == "string" and o.criterion or "l1",
                    granularity = type(o.granularity) == "string" and o.granularity or "element"}
    local snap = snapshot(model)
    for _, t in ipairs(prune.targets(model, {layers = o.layers, exclude = o.exclude})) do
        local entry = {name = t.name, results = {}}
        for _, a in ipairs(amounts) do
            local ok, err = pcall(function()
                prune.apply(model, {criterion = o.criterion, granularity = o.granularity, amount = a,
                                    layers = {t.name}, data = o.prune_data, loss = o.loss})
                local loss, acc = train.evaluate(model, data, {loss = o.loss, batch = o.batch})
                entry.results[#entry.results + 1] = {amount = a, loss = loss, accuracy = acc}
            end)
            restore(snap)
            if not ok then error(err, 0) end
        end
        result.layers[#result.layers + 1] = entry
        if o.on_layer then o.on_layer(entry) end
    end
    if o.csv then write_file(o.csv, sensitivity.to_csv(result)) end
    if o.json then write_file(o.json, core.json.encode(result)) end
    return result
end

-- For each layer, the largest amount whose accuracy drop from the baseline is at most
-- `budget` (absolute, e.g. 0.01 = one point); 0 when none is. Returns {name = amount}.
function sensitivity.amounts(sens, o)
    local budget = (o and o.budget) or 0.01
    local out = {}
    for _, l in ipairs(sens.layers) do
        local best = 0
        for _, r in ipairs(l.results) do
            local drop = (sens.baseline.accuracy or 0) - (r.accuracy or 0)
            if drop <= budget and r.amount > best then best = r.amount end
        end
        out[l.name] = best
    end
    return out
end

return setmetatable(sensitivity, {__call = function(_, ...) return run(...) end})
