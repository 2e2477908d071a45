-- prunert.prune.report: per layer shape, parameters, non-zeros, sparsity, dense and effective
-- FLOPs, and totals; as a table, as text and as JSON.
--
--   local rep = pr.prune.report(model, {input = {1, 1, 28, 28}})   -- prints unless quiet = true
--   rep.layers[i] = {name, kind, shape, params, nonzero, sparsity, flops, effective_flops}
--
-- FLOPs are per sample (2 x multiply-adds of Conv2d and Linear). Effective FLOPs count only the
-- non-zero weights: what a sparse kernel or a compacted layer actually has to do.
local core = require "prunert.core"
local trace = require "prunert.trace"
local pc = core.prune_core

local report = {}

local function guess_input(model)
    for _, m in model:named_modules() do
        local k = m:kind()
        if k == "Conv2d" then return nil end -- spatial size cannot be guessed
        if k == "Linear" then return {1, m:config()["in"]} end
    end
    return nil
end

local function fmt_count(n)
    if n >= 1e9 then return string.format("%.2fG", n / 1e9) end
    if n >= 1e6 then return string.format("%.2fM", n / 1e6) end
    if n >= 1e3 then return string.format("%.1fK", n / 1e3) end
    return tostring(math.floor(n))
end
report.fmt_count = fmt_count

function report.build(model, o)
    o = o or {}
    local input = o.input or guess_input(model)
    if not input then error("report: give input = the shape of one example batch, e.g. {1, 1, 28, 28}", 3) end
    local _, records = trace.run(model, core.zeros(table.unpack(input)))
    local rep = {layers = {}, params = 0, nonzero = 0, flops = 0, effective_flops = 0}
    for _, r in ipairs(records) do
        if r.kind == "Conv2d" or r.kind == "Linear" or r.kind == "BatchNorm1d" or r.kind == "BatchNorm2d" then
            local params, nonzero = 0, 0
            local wshape
            for _, pt in ipairs(r.module:own_params()) do
                local n = pt[2]:numel()
                params = params + n
                nonzero = nonzero + n - pc.count_zeros(pt[2])
                if pt[1] == "weight" then wshape = pt[2]:shape() end
            end
            local flops = trace.flops(r)
            local w = r.module:own_params()[1][2]
            local density = w:numel() > 0 and (w:numel() - pc.count_zeros(w)) / w:numel() or 0
            local eff = flops * density
            local name = r.path == "" and "(model)" or r.path
            rep.layers[#rep.layers + 1] = {name = name, kind = r.kind, shape = wshape, params = params,
                nonzero = nonzero, sparsity = params > 0 and 1 - nonzero / params or 0,
                flops = flops, effective_flops = eff, output_shape = r.output_shape}
            rep.params, rep.nonzero = rep.params + params, rep.nonzero + nonzero
            rep.flops, rep.effective_flops = rep.flops + flops, rep.effective_flops + eff
        end
    end
    rep.sparsity = rep.params > 0 and 1 - rep.nonzero / rep.params or 0
    return rep
end

function report.text(rep)
    local lines = {}
    local function add(...) lines[#lines + 1] = string.format(...) end
    add("%-14s %-12s %-16s %10s %10s %9s %10s %10s", "layer", "kind", "weight", "params", "nonzero",
        "sparsity", "FLOPs", "eff.FLOPs")
    for _, l in ipairs(rep.layers) do
        add("%-14s %-12s %-16s %10d %10d %8.2f%% %10s %10s", l.name, l.kind,
            "[" .. table.concat(l.shape or {}, ",") .. "]", l.params, l.nonzero, 100 * l.sparsity,
            fmt_count(l.flops), fmt_count(l.effective_flops))
    end
    add("%-14s %-12s %-16s %10d %10d %8.2f%% %10s %10s", "total", "", "", rep.params, rep.nonzero,
        100 * rep.sparsity, fmt_count(rep.flops), fmt_count(rep.effective_flops))
    return table.concat(lines, "\n")
end

function report.json(rep) return core.json.encode(rep) end

return setmetatable(report, {__call = function(_, model, o)
    local rep = report.build(model, o)
    if not (o and o.quiet) then print(report.text(rep)) end
    return rep
end})
