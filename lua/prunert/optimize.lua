-- prunert.optimize: picks, per layer, the fastest way to run a pruned model for inference.
--
-- pr.optimize(model, example_input [, {formats = {...}, repeats = 5, print = true}])
--   traces the model on example_input (prunert.trace) to learn every Linear/Conv2d layer's real
--   input shape, then times each layer's dense forward and each applicable sparse execution plan
--   ("csr", "bsr1x4", "bsr4x1", "nm2:4", and "direct" for Conv2d; runtime/core/sparse/exec.c)
--   on that shape with grad
--   mode off (median of `repeats` runs after one warm-up, the candidates taking turns so a
--   change of machine load hits all of them), keeps the fastest and installs it.
--   A plan is kept only if it reproduces the dense output of the layer (checked on the timing
--   input), so a kernel bug costs speed, never answers. Returns the report (a list of rows
--   {path, kind, weight_shape, input_shape, sparsity, dense_ms, plan, plan_ms, speedup,
--   skipped = {format = reason}}) and prints it unless opts.print == false.
--   The model is left in eval mode; model:train() drops every plan (module.c).
--
-- optimize.plans(model) -> {[path] = plan name} for the layers that run a plan, and
-- optimize.restore(model, plans) installs them again: what pr.save/pr.load record in the
-- manifest so plans survive a file.
local core = require "prunert.core"
local trace = require "prunert.trace"

local optimize = {}

optimize.FORMATS = {"csr", "bsr1x4", "bsr4x1", "nm2:4", "direct"}
local CONV_ONLY = {direct = true}

local function median(xs)
    table.sort(xs)
    local n = #xs
    if n % 2 == 1 then return xs[(n + 1) // 2] end
    return 0.5 * (xs[n // 2] + xs[n // 2 + 1])
end

local function time_once(m, x)
    local t0 = core.clock()
    m(x)
    return core.clock() - t0
end

local function supported(m)
    local kind = m:kind()
    if kind == "Linear" then return true end
    if kind == "Conv2d" then return m:config().groups == 1 end
    return false
end

local function zeros_fraction(w)
    local n = w:numel()
    if n == 0 then return 0 end
    return w:eq(0):sum():item() / n
end

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- The largest |a - b| relative to the size of b: plans must agree with dense to rounding.
local function mismatch(a, b)
    local diff = (a - b):abs():max():item()
    local scale = b:abs():max():item()
    return diff / (1 + scale)
end

local function check_opts(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("optimize: options must be a table", 3) end
    local formats = opts.formats or optimize.FORMATS
    if type(formats) ~= "table" then error("optimize: formats must be a list of plan names", 3) end
    for _, f in ipairs(formats) do
        local known = false
        for _, g in ipairs(optimize.FORMATS) do known = known or f == g end
        if not known then
            error(string.format("optimize: unknown plan '%s' (known: %s)", tostring(f),
                table.concat(optimize.FORMATS, ", ")), 3)
        end
    end
    local repeats = opts.repeats or 5
    if math.type(repeats) ~= "integer" or repeats < 1 then
        error("optimize: repeats must be a positive integer", 3)
    end
    return formats, repeats
end

function optimize.run(model, x, opts)
    local formats, repeats = check_opts(opts)
    opts = opts or {}
    model:eval()
    local _, records = trace.run(model, x)
    local report = {}
    local prev = core.set_grad_enabled(false)
    local ok, err = pcall(function()
        for _, rec in ipairs(records) do
            local m = rec.module
            if (rec.kind == "Linear" or rec.kind == "Conv2d") and supported(m) then
                local w = m:own_params()[1][2]
                -- the timing input: random data of the traced shape (kernel time does not
                -- depend on the values, and the real activations are not kept by the trace)
                local xin = core.randn(table.unpack(rec.input_shape))
                m:set_exec("dense")
                local y0 = m(xin)   -- also the warm-up of the dense path
                local row = {path = rec.path, kind = rec.kind, weight_shape = w:shape(),
                             input_shape = rec.input_shape, sparsity = zeros_fraction(w),
                             skipped = {}}
                -- the candidates that build and reproduce the dense output
                local cands, times = {"dense"}, {dense = {}}
                for _, f in ipairs(formats) do
                    local made, why = false, "Conv2d only"
                    if rec.kind == "Conv2d" or not CONV_ONLY[f] then made, why = pcall(m.set_exec, m, f) end
                    if made then
                        local bad = mismatch(m(xin), y0)   -- also its warm-up
                        if bad > 1e-4 then
                            row.skipped[f] = string.format("output differs from dense by %.3g", bad)
                        else
                            cands[#cands + 1] = f
                            times[f] = {}
                        end
                    else
                        row.skipped[f] = tostring(why)
                    end
                end
                -- round robin, so a change of machine load hits every candidate alike
                for _ = 1, repeats do
                    for _, f in ipairs(cands) do
                        m:set_exec(f)
                        times[f][#times[f] + 1] = time_once(m, xin)
                    end
                end
                local dense_t = median(times.dense)
                local best, best_t = "dense", dense_t
                for _, f in ipairs(cands) do
                    local t = median(times[f])
                    if t < best_t then best, best_t = f, t end
                end
                row.dense_ms = dense_t * 1e3
                m:set_exec(best)
                row.plan, row.plan_ms, row.speedup = best, best_t * 1e3, dense_t / best_t
                report[#report + 1] = row
            end
        end
    end)
    core.set_grad_enabled(prev)
    if not ok then error(err, 0) end
    if opts.print ~= false then print(optimize.format(report)) end
    return report
end

-- The report as text, one row per layer.
function optimize.format(report)
    local lines = {string.format("%-12s %-7s %-16s %-16s %8s %10s %-7s %10s %8s", "layer", "kind",
        "weight", "input", "sparsity", "dense ms", "plan", "plan ms", "speedup")}
    for _, r in ipairs(report) do
        lines[#lines + 1] = string.format("%-12s %-7s %-16s %-16s %7.1f%% %10.3f %-7s %10.3f %7.2fx",
            r.path == "" and "(root)" or r.path, r.kind, shape_str(r.weight_shape),
            shape_str(r.input_shape), 100 * r.sparsity, r.dense_ms, r.plan, r.plan_ms, r.speedup)
    end
    return table.concat(lines, "\n")
end

-- {[path] = name} of the layers running a plan (what a model file's manifest records).
function optimize.plans(model)
    local plans = {}
    for path, m in model:named_modules() do
        local name = m:exec()
        if name ~= "dense" then plans[path] = name end
    end
    return plans
end

-- Installs plans {[path] = name} (from optimize.plans or a manifest: untrusted, so checked)
-- on a model in eval mode. Unknown paths and impossible plans are errors naming them.
function optimize.restore(model, plans)
    if plans == nil then return model end
    if type(plans) ~= "table" then error("restore: plans must be a table {path = name}", 2) end
    local by_path = {}
    for path, m in model:named_modules() do by_path[path] = m end
    model:eval()
    for path, name in pairs(plans) do
        local m = by_path[path]
        if type(path) ~= "string" or not m then
            error(string.format("restore: the model has no module '%s'", tostring(path)), 2)
        end
        if type(name) ~= "string" then
            error(string.format("restore: plan for '%s' must be a name", path), 2)
        end
        local ok, err = pcall(m.set_exec, m, name)
        if not ok then error(string.format("restore: '%s': %s", path, tostring(err)), 2) end
    end
    return model
end

-- Per-tensor encodings for a model file from pr.save's opts.encoding: a name ("dense", "sparse",
-- "quant8", "kmeans4") for every tensor, or a function(name, tensor) -> name (nil: dense).
-- Lossy names apply to float32 parameters and buffers; masks ("*_mask", 0/1) and other dtypes
-- get "sparse", which is lossless and as small for them. Returns {[tensor name] = encoding},
-- the `encodings` table core.io.write_model_file takes.
local LOSSY = {quant8 = true, kmeans4 = true}
local KNOWN = {dense = true, sparse = true, quant8 = true, kmeans4 = true}

function optimize.encodings(state_dict, encoding)
    local out = {}
    if encoding == nil then return out end
    if type(encoding) ~= "string" and type(encoding) ~= "function" then
        error("encoding must be a name (dense, sparse, quant8, kmeans4) or a function(name, tensor)", 2)
    end
    for name, t in pairs(state_dict) do
        local e = encoding
        if type(encoding) == "function" then e = encoding(name, t) or "dense" end
        if not KNOWN[e] then
            error(string.format("encoding for '%s': unknown encoding '%s' (dense, sparse, quant8, kmeans4)",
                name, tostring(e)), 2)
        end
        if LOSSY[e] and (t:dtype() ~= "float32" or name:match("_mask$")) then e = "sparse" end
        out[name] = e
    end
    return out
end

-- pr.save's opts with opts.encoding expanded into opts.encodings for model:state_dict().
function optimize.save_options(model, opts)
    if opts == nil or opts.encoding == nil then return opts end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local enc = optimize.encodings(model:state_dict(), opts.encoding)
    o.encodings = o.encodings or {}
    for k, v in pairs(enc) do
        if o.encodings[k] == nil then o.encodings[k] = v end
    end
    o.encoding = nil
    return o
end

return setmetatable(optimize, {__call = function(_, ...) return optimize.run(...) end})
