-- prunert.trace: runs a model on an example input one leaf module at a time and records, for
-- every module, its dotted path, input and output shapes. Reports use it for FLOPs; structural
-- pruning uses the same walk for its dependency groups. Containers are followed by their own
-- rules (Sequential chains, Residual sums body and shortcut, Concat joins along a dim), so the
-- result is the same as calling the model.
local core = require "prunert.core"

local trace = {}

local function shape_of(t) return t:shape() end

-- Returns the output and a list of records {path, module, kind, input_shape, output_shape,
-- parent_path, index} in execution order (containers after their children).
function trace.run(model, x)
    local records = {}
    local function visit(m, path, inp, parent, index)
        local kind = m:kind()
        local y
        local kids = m:children()
        local function child_path(i) return path == "" and tostring(i - 1) or (path .. "." .. (i - 1)) end
        if kind == "Sequential" then
            y = inp
            for i, c in ipairs(kids) do y = visit(c, child_path(i), y, path, i) end
        elseif kind == "Residual" then
            local body = visit(kids[1], child_path(1), inp, path, 1)
            local skip = kids[2] and visit(kids[2], child_path(2), inp, path, 2) or inp
            y = body + skip
        elseif kind == "Concat" then
            local outs = {}
            for i, c in ipairs(kids) do outs[i] = visit(c, child_path(i), inp, path, i) end
            y = core.cat(outs, m:config().dim + 1)
        else
            y = m(inp)
        end
        records[#records + 1] = {path = path, module = m, kind = kind, input_shape = shape_of(inp),
                                 output_shape = shape_of(y), parent_path = parent, index = index}
        return y
    end
    -- eval mode: a trace must not move BatchNorm running statistics, and batch 1 is fine
    local was = model:is_training()
    model:eval()
    local prev = core.set_grad_enabled(false)
    local ok, y = pcall(visit, model, "", x, nil, nil)
    core.set_grad_enabled(prev)
    model:train(was)
    if not ok then error(y, 2) end
    return y, records
end

-- Dense FLOPs (2 x multiply-adds) of one layer for ONE sample, from its record; and the
-- number of output positions each weight is used at (FLOPs = 2 * weights * positions).
-- 0 for layers without weights.
function trace.flops(rec)
    local c = rec.module:config()
    local out = rec.output_shape
    if rec.kind == "Conv2d" then
        local positions = out[3] * out[4]
        local weights = c.out * (c["in"] // c.groups) * c.kh * c.kw
        return 2 * weights * positions, positions
    elseif rec.kind == "Linear" then
        return 2 * c["in"] * c.out, 1
    end
    return 0, 0
end

return trace
