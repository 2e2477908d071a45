-- prunert.model: saving and loading whole models, and describing a saved file.
--
-- The file is the container of runtime/core/io (magic, version, CRC'd zlib chunks, written to a
-- temporary file and renamed). Its manifest holds the architecture as a configuration tree of
-- known layer kinds with numeric options, so loading rebuilds the model without executing
-- anything from the file; the tensors are the state_dict (parameters, buffers, masks).
local core = require "prunert.core"
local nn = require "prunert.nn"
local optimize = require "prunert.optimize"

local model_io = {}

local FORMAT = "prunert-model"

local function nonzeros(t)
    return math.tointeger(t:ne(0):sum():item())
end

-- Per-parameter facts for the manifest and reports: shape, numel, non-zeros, masked or not.
function model_io.parameter_stats(model)
    local stats = {}
    for name, p in model:named_parameters() do
        stats[#stats + 1] = {name = name, shape = p:shape(), numel = p:numel(), nonzero = nonzeros(p),
                             masked = core.param_mask(p) ~= nil}
    end
    return stats
end

-- pr.save(model, path [, meta [, opts]]) -> true, or nil and a message.
-- meta: any table of strings, numbers, booleans and tables (criterion, schedule, history...).
-- opts.encoding: a name, or a function(name, tensor) -> name, choosing each tensor's encoding.
function model_io.save(model, path, meta, opts)
    if type(path) ~= "string" then error("save: path must be a string", 2) end
    local manifest = {
        format = FORMAT,
        prunert = core.version,
        architecture = model:to_config(),
        parameters = model_io.parameter_stats(model),
        meta = meta or {},
        plans = optimize.plans(model),   -- sparse execution plans by module path (pr.optimize)
    }
    opts = optimize.save_options(model, opts)   -- opts.encoding (name or function) -> encodings
    local ok, err = core.io.write_model_file(path, manifest, model:state_dict(), opts)
    if not ok then return nil, err end
    return true
end

-- pr.load(path) -> model, meta, manifest  (or nil and a message for a missing or damaged file).
-- The architecture, state, eval mode and plans are rebuilt in C (pr_model_load), as a C host
-- loading the file through prunert_model_load gets them.
function model_io.load(path)
    if type(path) ~= "string" then error("load: path must be a string", 2) end
    local model, manifest = core.io.load_model(path)
    if not model then return nil, manifest end
    return model, manifest.meta or {}, manifest
end

local function human(n)
    if n >= 1024 * 1024 then return string.format("%.2f MiB", n / 1048576) end
    if n >= 1024 then return string.format("%.1f KiB", n / 1024) end
    return string.format("%d B", n)
end
model_io.human_bytes = human

-- Text for `prunert info FILE`: architecture, parameter counts, per-layer sparsity, bytes per chunk.
function model_io.info(path)
    local chunks, err = core.io.model_file_info(path)
    if not chunks then return nil, err end
    local manifest, _ = core.io.read_model_file(path)
    local lines = {}
    local function add(...) lines[#lines + 1] = string.format(...) end
    add("%s", path)
    if manifest and manifest.format == FORMAT then
        local ok, model = pcall(nn.from_config, manifest.architecture)
        if ok then
            add("")
            add("%s", tostring(model))
        end
        add("")
        add("%-28s %-16s %10s %10s %9s", "parameter", "shape", "numel", "nonzero", "sparsity")
        local total, nz = 0, 0
        for _, p in ipairs(manifest.parameters or {}) do
            total, nz = total + p.numel, nz + p.nonzero
            add("%-28s %-16s %10d %10d %8.2f%%", p.name, "[" .. table.concat(p.shape, ",") .. "]", p.numel,
                p.nonzero, p.numel > 0 and 100 * (1 - p.nonzero / p.numel) or 0)
        end
        add("%-28s %-16s %10d %10d %8.2f%%", "total", "", total, nz, total > 0 and 100 * (1 - nz / total) or 0)
        if manifest.meta and next(manifest.meta) then
            add("")
            add("meta: %s", core.json.encode(manifest.meta))
        end
    end
    add("")
    -- ratio: against the tensor as dense elements (float32: 4 bytes each), whatever the encoding
    local ESIZE = {float32 = 4, int64 = 8, uint8 = 1}
    add("%-28s %-10s %-9s %12s %12s %7s", "chunk", "dtype", "encoding", "dense", "stored", "ratio")
    local raw, stored = 0, 0
    for _, c in ipairs(chunks) do
        local dense = c.raw_bytes
        if c.shape then
            dense = ESIZE[c.dtype] or 0
            for _, d in ipairs(c.shape) do dense = dense * d end
        end
        raw, stored = raw + dense, stored + c.stored_bytes
        add("%-28s %-10s %-9s %12s %12s %6.1fx", c.name, c.dtype or "", c.encoding or "", human(dense),
            human(c.stored_bytes), c.stored_bytes > 0 and dense / c.stored_bytes or 0)
    end
    add("%-28s %-10s %-9s %12s %12s %6.1fx", "total", "", "", human(raw), human(stored),
        stored > 0 and raw / stored or 0)
    return table.concat(lines, "\n")
end

return model_io
