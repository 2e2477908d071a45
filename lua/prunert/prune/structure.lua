-- prunert.prune.structure: structural pruning that really removes filters and neurons.
--
--   pr.prune.groups(model, {input = {1, 3, 32, 32}})     coupled channel groups, with reasons
--   pr.prune.structured(model, {criterion = "l1", amount = 0.5, input = ..., scope = ...})
--   pr.prune.compact(model, {input = ..., round_to = 8})  slices pruned channels out of every layer
--   pr.prune.fold_bn(model)                              merges BatchNorm into the conv/linear before it
--
-- Groups come from following channels through prunert's own graph: a Conv2d or Linear output
-- starts a channel space; BatchNorm, activations, pooling and Dropout carry it; a depthwise conv
-- is tied to it channel for channel; Flatten turns channel c into a block of H*W inputs of the
-- next Linear; Residual sums tie the spaces of body and shortcut into one group; Concat places
-- branches' channels at offsets. Spaces that reach the model's input or output, a Softmax over
-- channels or a grouped (non-depthwise) conv cannot be pruned, and the group says why.
local core = require "prunert.core"
local trace = require "prunert.trace"
local pc = core.prune_core

local structure = {}

local PASS = {ReLU = true, LeakyReLU = true, Sigmoid = true, Tanh = true, Dropout = true,
              Identity = true, MaxPool2d = true, AvgPool2d = true, GlobalAvgPool2d = true}

local function guess_input(model)
    for _, m in model:named_modules() do
        local k = m:kind()
        if k == "Conv2d" then return nil end
        if k == "Linear" then return {1, m:config()["in"]} end
    end
    return nil
end

local function label(path) return path == "" and "(model)" or path end

-- ---- discovery ----
-- A view is a list of segments {id, base, mult}: channel c of atomic space `id` occupies the
-- columns base + c*mult .. base + c*mult + mult - 1 of the tensor flowing on that edge.

function structure.groups(model, opts)
    opts = opts or {}
    local input = opts.input or guess_input(model)
    if not input then error("groups: give input = the shape of one example batch, e.g. {1, 3, 32, 32}", 2) end
    local _, records = trace.run(model, core.zeros(table.unpack(input)))
    local rec_of = {}
    for _, r in ipairs(records) do rec_of[r.path] = r end

    local spaces, parent = {}, {}
    local function new_space(size, producer)
        local id = #spaces + 1
        spaces[id] = {id = id, size = size, producers = {}, members = {}, consumers = {}, blocked = nil, notes = {}}
        if producer then spaces[id].producers[1] = producer end
        parent[id] = id
        return id
    end
    local function find(i)
        while parent[i] ~= i do parent[i] = parent[parent[i]]; i = parent[i] end
        return i
    end
    local function block(view, reason)
        for _, seg in ipairs(view) do
            local s = spaces[seg.id]
            s.blocked = s.blocked or reason
        end
    end
    local function producer_names(view)
        local names = {}
        for _, seg in ipairs(view) do
            for _, p in ipairs(spaces[seg.id].producers) do names[#names + 1] = label(p.path) end
        end
        return #names > 0 and table.concat(names, " + ") or "the model input"
    end
    local function union(a, b, note)
        if #a ~= #b then
            block(a, note .. "; their channel layouts differ")
            block(b, note .. "; their channel layouts differ")
            return
        end
        for i = 1, #a do
            if a[i].base ~= b[i].base or a[i].mult ~= b[i].mult then
                block(a, note .. "; their channel layouts differ")
                block(b, note .. "; their channel layouts differ")
                return
            end
            local ra, rb = find(a[i].id), find(b[i].id)
            if ra ~= rb then
                parent[rb] = ra
                local sa, sb = spaces[ra], spaces[rb]
                for _, k in ipairs({"producers", "members", "consumers", "notes"}) do
                    for _, v in ipairs(sb[k]) do sa[k][#sa[k] + 1] = v end
                end
                sa.blocked = sa.blocked or sb.blocked
            end
            local s = spaces[find(a[i].id)]
            s.notes[#s.notes + 1] = note
        end
    end
    local function width(view)
        local w = 0
        for _, seg in ipairs(view) do w = math.max(w, seg.base + spaces[seg.id].size * seg.mult) end
        return w
    end
    local function add(view, list, entry)
        for _, seg in ipairs(view) do
            local e = {}
            for k, v in pairs(entry) do e[k] = v end
            e.base, e.mult = seg.base, seg.mult
            local s = spaces[find(seg.id)]
            s[list][#s[list] + 1] = e
        end
    end

    local function visit(m, path, view)
        local kind = m:kind()
        local kids = m:children()
        local function cp(i) return path == "" and tostring(i - 1) or (path .. "." .. (i - 1)) end
        if kind == "Sequential" then
            for i, c in ipairs(kids) do view = visit(c, cp(i), view) end
            return view
        elseif kind == "Residual" then
            local b = visit(kids[1], cp(1), view)
            local s = kids[2] and visit(kids[2], cp(2), view) or view
            local note = string.format("%s output is summed with %s (%s); they are pruned as one group",
                producer_names(b), kids[2] and producer_names(s) or ("the block input from " .. producer_names(view)),
                kind .. " " .. label(path))
            union(b, s, note)
            return b
        elseif kind == "Concat" then
            local out, base = {}, 0
            for i, c in ipairs(kids) do
                local v = visit(c, cp(i), view)
                for _, seg in ipairs(v) do out[#out + 1] = {id = seg.id, base = seg.base + base, mult = seg.mult} end
                base = base + width(v)
            end
            return out
        elseif kind == "Conv2d" then
            local c = m:config()
            local w, b = m:own_params()[1][2], m:own_params()[2]
            if c.groups == 1 then
                add(view, "consumers", {path = path, module = m, kind = kind})
                return {{id = new_space(c.out, {path = path, module = m}), base = 0, mult = 1}}
            elseif c.groups == c["in"] and c.out == c["in"] then
                add(view, "members", {path = path, module = m, role = "depthwise"})
                return view
            else
                block(view, string.format("%s is a grouped convolution (groups = %d); its channels move in groups", label(path), c.groups))
                local id = new_space(c.out, {path = path, module = m})
                spaces[id].blocked = string.format("%s is a grouped convolution (groups = %d); its channels move in groups", label(path), c.groups)
                return {{id = id, base = 0, mult = 1}}
            end
        elseif kind == "Linear" then
            add(view, "consumers", {path = path, module = m, kind = kind})
            return {{id = new_space(m:config().out, {path = path, module = m}), base = 0, mult = 1}}
        elseif kind == "BatchNorm1d" or kind == "BatchNorm2d" then
            add(view, "members", {path = path, module = m, role = "batchnorm"})
            return view
        elseif kind == "Flatten" then
            local r = rec_of[path]
            local shp = r.input_shape
            local start = m:config().start_dim + 1
            if start ~= 2 then
                block(view, label(path) .. " flattens from a dim other than the channels")
                return view
            end
            local hw = 1
            for d = 3, #shp do hw = hw * shp[d] end
            local out = {}
            for _, seg in ipairs(view) do out[#out + 1] = {id = seg.id, base = seg.base * hw, mult = seg.mult * hw} end
            return out
        elseif kind == "Softmax" or kind == "LogSoftmax" then
            if m:config().dim == 1 then block(view, label(path) .. " normalises over these channels") end
            return view
        elseif PASS[kind] then
            return view
        end
        block(view, label(path) .. " (" .. kind .. ") is not understood by structural pruning")
        return view
    end

    local in_id = new_space(input[2] or 0, nil)
    spaces[in_id].blocked = "it is the model's input"
    local out = visit(model, "", {{id = in_id, base = 0, mult = 1}})
    for _, seg in ipairs(out) do
        local s = spaces[find(seg.id)]
        if not s.blocked then
            s.blocked = "it is the model's output (" .. producer_names({seg}) .. " gives the model's outputs)"
        end
    end

    local groups = {}
    for id = 1, #spaces do
        if find(id) == id and #spaces[id].producers > 0 then
            local s = spaces[id]
            local g = {id = #groups + 1, size = s.size, producers = s.producers, members = s.members,
                       consumers = s.consumers, prunable = s.blocked == nil, reason = s.blocked, notes = s.notes}
            local names = {}
            for _, p in ipairs(g.producers) do names[#names + 1] = label(p.path) end
            g.name = table.concat(names, "+")
            groups[#groups + 1] = g
        end
    end
    return groups
end

function structure.describe(groups)
    local lines = {}
    for _, g in ipairs(groups) do
        local parts = {}
        for _, p in ipairs(g.producers) do parts[#parts + 1] = label(p.path) .. " (out)" end
        for _, m in ipairs(g.members) do parts[#parts + 1] = label(m.path) .. " (" .. m.role .. ")" end
        for _, c in ipairs(g.consumers) do parts[#parts + 1] = label(c.path) .. " (in)" end
        lines[#lines + 1] = string.format("group %d: %d channels: %s%s", g.id, g.size, table.concat(parts, ", "),
            g.prunable and "" or ("  [not prunable: " .. g.reason .. "]"))
        for _, n in ipairs(g.notes) do lines[#lines + 1] = "    " .. n end
    end
    return table.concat(lines, "\n")
end

-- ---- scores of a group's channels ----

local function weight_of(m) return m:own_params()[1][2] end
local function bias_of(m) local p = m:own_params()[2] return p and p[2] end
local function param(m, name)
    for _, pt in ipairs(m:own_params()) do if pt[1] == name then return pt[2] end end
end

local function segment(t, base, size)
    return t:narrow(1, base + 1, size)
end

local group_criteria = {}
structure.criteria = group_criteria

local function norm_score(p)
    return function(g)
        local s = core.zeros(g.size)
        for _, pr_ in ipairs(g.producers) do s:add_(pc.structure_norm(weight_of(pr_.module), 1, p)) end
        for _, m in ipairs(g.members) do
            if m.role == "depthwise" then s:add_(segment(pc.structure_norm(weight_of(m.module), 1, p), m.base, g.size)) end
        end
        return s
    end
end
group_criteria.l1 = norm_score(1)
group_criteria.l2 = norm_score(2)

group_criteria.bn_gamma = function(g)
    local s, found = core.zeros(g.size), false
    for _, m in ipairs(g.members) do
        if m.role == "batchnorm" then
            s:add_(segment(param(m.module, "weight"):abs(), m.base, g.size))
            found = true
        end
    end
    if not found then error("structured: criterion bn_gamma needs a BatchNorm in group " .. g.name, 0) end
    return s
end
group_criteria.bn_scale = group_criteria.bn_gamma

-- Seed 003: a depthwise conv and the pointwise conv after it decide channel i together,
-- ||dw[i]|| * ||pw[:, i]||; groups without that pair fall back to the producers' L1.
group_criteria.dw_coupled = function(g)
    for _, m in ipairs(g.members) do
        if m.role == "depthwise" then
            for _, c in ipairs(g.consumers) do
                local cfg = c.module:config()
                if c.kind == "Conv2d" and cfg.kh == 1 and cfg.kw == 1 and c.mult == 1 and c.base == m.base then
                    return segment(pc.depthwise_coupled(weight_of(m.module), weight_of(c.module), 1), m.base, g.size)
                end
            end
        end
    end
    return group_criteria.l1(g)
end

group_criteria.random = function(g) return core.rand(g.size) end

-- Taylor per channel: sum over the group's producers of |w * g| over each filter, gradients
-- from `data`.
group_criteria.taylor = function(g, ctx)
    if not ctx.taylor then error("structured: criterion taylor needs data", 0) end
    local s = core.zeros(g.size)
    for _, p in ipairs(g.producers) do s:add_(pc.structure_reduce(ctx.taylor[p.path], 1, "sum")) end
    return s
end

-- Activity of a group's channels: mean |output| (or 1 - APoZ) of the activation that follows
-- each producer (past a BatchNorm), measured on `data` and summed over producers.
local ACT = {ReLU = true, LeakyReLU = true, Sigmoid = true, Tanh = true}
local function activity_probe(model, producer)
    for _, c in ipairs(model:modules()) do
        local kids = c:children()
        for i, k in ipairs(kids) do
            if k:same(producer) then
                for j = i + 1, math.min(i + 2, #kids) do
                    if ACT[kids[j]:kind()] then return kids[j] end
                    if not kids[j]:kind():match("^BatchNorm") then break end
                end
                return producer
            end
        end
    end
    return producer
end

local function gather_group_activity(model, groups, o)
    local probes = {}
    for _, g in ipairs(groups) do
        for _, p in ipairs(g.producers) do probes[p.path] = activity_probe(model, p.module) end
    end
    for _, m in pairs(probes) do m:collect_activity(true) end
    local was = model:is_training()
    model:eval()
    local prev = core.set_grad_enabled(false)
    local ok, err = pcall(function()
        local n = 0
        for x in o.data:batches{batch = o.batch or 256} do
            model(x)
            n = n + 1
            if n >= (o.batches or 8) then break end
        end
    end)
    core.set_grad_enabled(prev)
    model:train(was)
    local stats = {}
    for path, m in pairs(probes) do
        local sum, zeros, count = m:activity()
        m:collect_activity(false)
        if sum then stats[path] = {mean = sum / count, apoz = zeros:float() / count} end
    end
    if not ok then error(err, 0) end
    return stats
end

local function activity_score(field)
    return function(g, ctx)
        if not ctx.activity then error("structured: criterion " .. field .. " needs data", 0) end
        local s = core.zeros(g.size)
        for _, p in ipairs(g.producers) do
            local st = ctx.activity[p.path]
            if not st then error("structured: no activity was recorded after " .. label(p.path), 0) end
            s:add_(field == "apoz" and (st.apoz:neg() + 1) or st.mean)
        end
        return s
    end
end
group_criteria.activity = activity_score("activity")
group_criteria.apoz = activity_score("apoz")

-- ---- masks for a group ----

local function apply_mask(p, m)
    local old = p:mask()
    p:set_mask(old and old * m or m)
end

-- A 0/1 mask of length n that is `unit` on base + c*mult + k and 1 elsewhere.
local function spread(unit, n, base, mult)
    if base == 0 and mult == 1 and n == unit:numel() then return unit end
    local u = unit:totable()
    local t = {}
    for i = 1, n do t[i] = 1 end
    for c = 1, #u do
        if u[c] == 0 then
            for k = 0, mult - 1 do t[base + (c - 1) * mult + k + 1] = 0 end
        end
    end
    return core.tensor(t)
end

local function mask_group(g, unit)
    for _, p in ipairs(g.producers) do
        local w = weight_of(p.module)
        apply_mask(w, pc.structure_expand(unit, w:shape(), 1))
        local b = bias_of(p.module)
        if b then apply_mask(b, unit) end
    end
    for _, m in ipairs(g.members) do
        if m.role == "batchnorm" then
            local n = param(m.module, "weight"):numel()
            local u = spread(unit, n, m.base, m.mult)
            apply_mask(param(m.module, "weight"), u)
            apply_mask(param(m.module, "bias"), u)
        else
            local w = weight_of(m.module)
            local u = spread(unit, w:size(1), m.base, m.mult)
            apply_mask(w, pc.structure_expand(u, w:shape(), 1))
            local b = bias_of(m.module)
            if b then apply_mask(b, u) end
        end
    end
    for _, c in ipairs(g.consumers) do
        local w = weight_of(c.module)
        local u = spread(unit, w:size(2), c.base, c.mult)
        apply_mask(w, pc.structure_expand(u, w:shape(), 2))
    end
end

local function is_selected(g, layers)
    if not layers then return true end
    local hit, missing = false, {}
    for _, p in ipairs(g.producers) do
        local found = false
        for _, l in ipairs(layers) do
            if l == p.path or l == p.path .. ".weight" then found = true end
        end
        if found then hit = true else missing[#missing + 1] = label(p.path) end
    end
    if hit and #missing > 0 then
        error(string.format("structured: %s cannot be pruned alone: %s", table.concat(layers, ", "),
            g.notes[1] or ("it is coupled with " .. table.concat(missing, ", "))), 0)
    end
    return hit
end

-- Structured pruning of whole channel groups: scores per channel from the group's layers,
-- amounts per group or one ranking across groups (scope = "global"), then masks on every
-- member (producers' filters and biases, BatchNorm scale and shift, depthwise filters,
-- consumers' input columns). compact() then removes them.
function structure.structured(model, o)
    o = o or {}
    local crit = o.criterion or "l1"
    local score_fn = type(crit) == "function" and crit or group_criteria[crit]
    if not score_fn then error("structured: unknown criterion '" .. tostring(crit) .. "'", 2) end
    if type(o.amount) ~= "number" and type(o.amount) ~= "table" then error("structured: amount is required", 2) end
    local groups = structure.groups(model, o)
    local chosen = {}
    for _, g in ipairs(groups) do
        local ok, sel = pcall(is_selected, g, o.layers)
        if not ok then error(sel, 2) end
        if sel and o.exclude then
            for _, p in ipairs(g.producers) do
                for _, e in ipairs(o.exclude) do if e == p.path or e == p.path .. ".weight" then sel = false end end
            end
        end
        if sel and not g.prunable then
            if o.layers then error("structured: group " .. g.name .. " cannot be pruned: " .. g.reason, 2) end
            sel = false
        end
        if sel then chosen[#chosen + 1] = g end
    end
    local ctx = {}
    if crit == "taylor" then
        if not o.data then error("structured: criterion taylor needs data", 2) end
        ctx.taylor = structure._taylor(model, chosen, o)
    elseif crit == "activity" or crit == "apoz" then
        if not o.data then error("structured: criterion " .. crit .. " needs data", 2) end
        ctx.activity = gather_group_activity(model, chosen, o)
    end
    local scores = {}
    for i, g in ipairs(chosen) do
        local ok, s = pcall(score_fn, g, ctx)
        if not ok then error(s, 2) end
        -- already-removed channels rank first so amounts count them
        local w = weight_of(g.producers[1].module)
        local m = w:mask()
        if m then s = core.where(pc.structure_norm(m, 1, 1):gt(0), s, core.full({1}, -3.0e38)) end
        scores[i] = s
    end
    local min_keep = o.min_keep or 1
    if (o.scope or "group") == "global" then
        local ths = pc.threshold_global(scores, o.amount, min_keep)
        for i, g in ipairs(chosen) do mask_group(g, pc.mask_from_scores(scores[i], ths[i])) end
    else
        for i, g in ipairs(chosen) do
            local a = o.amount
            if type(a) == "table" then a = a[g.name] or a[g.producers[1].path] or a.default or 0 end
            local n = g.size
            local keep_floor = math.min(n, min_keep)
            local cut = math.min(math.floor(a * n + 0.5), n - keep_floor)
            local mask = pc.mask_amount(scores[i], cut / n)
            mask_group(g, mask)
        end
    end
    return chosen
end

function structure._taylor(model, groups, o)
    local acc = {}
    local lf = o.loss == "mse" and core.mse_loss or core.cross_entropy
    local list = {}
    for _, g in ipairs(groups) do
        for _, p in ipairs(g.producers) do
            local w = weight_of(p.module)
            acc[p.path] = core.zeros(table.unpack(w:shape()))
            list[#list + 1] = {p.path, w}
        end
    end
    local n = 0
    for x, y in o.data:batches{batch = o.batch or 128} do
        model:zero_grad()
        lf(model(x), y):backward()
        for _, e in ipairs(list) do
            local g = e[2]:grad()
            if g then acc[e[1]]:add_(pc.taylor(e[2], g)) end
        end
        n = n + 1
        if n >= (o.batches or 8) then break end
    end
    model:zero_grad()
    return acc
end

-- ---- compaction ----

local function index_tensor(list) return core.tensor(list, "int64") end

local function nonzero_channels(g)
    -- A channel can go when every producer's filter and bias are zero there, and every
    -- BatchNorm member's scale and shift are zero (then its output is exactly zero whatever its
    -- running statistics), and depthwise members' filters and biases are zero.
    local alive = core.zeros(g.size)
    for _, p in ipairs(g.producers) do
        alive:add_(pc.structure_norm(weight_of(p.module), 1, 1))
        local b = bias_of(p.module)
        if b then alive:add_(b:abs()) end
    end
    for _, m in ipairs(g.members) do
        if m.role == "batchnorm" then
            alive:add_(segment(param(m.module, "weight"):abs(), m.base, g.size))
            alive:add_(segment(param(m.module, "bias"):abs(), m.base, g.size))
        else
            alive:add_(segment(pc.structure_norm(weight_of(m.module), 1, 1), m.base, g.size))
            local b = bias_of(m.module)
            if b then alive:add_(segment(b:abs(), m.base, g.size)) end
        end
    end
    return alive
end

-- Keeps index list `keep` (1-based channel numbers) of a segment of size n at base/mult inside
-- a dimension of size total: returns the 1-based indices of that dimension to keep.
local function expand_keep(keep, n, base, mult, total)
    local drop = {}
    local kept = {}
    for _, c in ipairs(keep) do kept[c] = true end
    for c = 1, n do
        if not kept[c] then
            for k = 0, mult - 1 do drop[base + (c - 1) * mult + k + 1] = true end
        end
    end
    local idx = {}
    for i = 1, total do if not drop[i] then idx[#idx + 1] = i end end
    return idx
end

local function slice_param(m, name, dim, idx)
    for _, pt in ipairs(m:own_params()) do
        if pt[1] == name then
            local p = pt[2]
            local mask = p:mask()
            local np = p:index_select(dim, idx):contiguous()
            m:replace(name, np)
            if mask then np:set_mask(mask:index_select(dim, idx):contiguous()) end
            return
        end
    end
    for _, pt in ipairs(m:own_buffers()) do
        if pt[1] == name then
            m:replace(name, pt[2]:index_select(dim, idx):contiguous())
            return
        end
    end
end

-- Removes every channel whose group members are all zero there (what structured() and
-- filter-level prune.apply() leave behind), shrinking producers, BatchNorms, depthwise convs and
-- the next layers' inputs. round_to = N keeps channel counts multiples of N (it keeps some zero
-- channels; outputs are unchanged). Returns the model (changed in place) and a summary.
function structure.compact(model, o)
    o = o or {}
    local round_to = o.round_to or 1
    local groups = structure.groups(model, o)
    local summary = {groups = {}, removed = 0}
    for _, g in ipairs(groups) do
        if g.prunable then
            local alive = nonzero_channels(g):totable()
            local keep, dead = {}, {}
            for c, v in ipairs(alive) do
                if v ~= 0 then keep[#keep + 1] = c else dead[#dead + 1] = c end
            end
            if #keep == 0 and #dead > 0 then keep[1] = table.remove(dead, 1) end -- never an empty layer
            while #keep % round_to ~= 0 and #dead > 0 do keep[#keep + 1] = table.remove(dead, 1) end
            table.sort(keep)
            if #keep < g.size then
                local idx = index_tensor(keep)
                for _, p in ipairs(g.producers) do
                    slice_param(p.module, "weight", 1, idx)
                    slice_param(p.module, "bias", 1, idx)
                    p.module:set_config("out", #keep)
                end
                for _, m in ipairs(g.members) do
                    local total = m.role == "batchnorm" and param(m.module, "weight"):numel() or weight_of(m.module):size(1)
                    local midx = index_tensor(expand_keep(keep, g.size, m.base, m.mult, total))
                    if m.role == "batchnorm" then
                        for _, name in ipairs({"weight", "bias", "running_mean", "running_var"}) do
                            slice_param(m.module, name, 1, midx)
                        end
                        m.module:set_config("features", midx:numel())
                    else
                        slice_param(m.module, "weight", 1, midx)
                        slice_param(m.module, "bias", 1, midx)
                        m.module:set_config("in", midx:numel())
                        m.module:set_config("out", midx:numel())
                        m.module:set_config("groups", midx:numel())
                    end
                end
                for _, c in ipairs(g.consumers) do
                    local w = weight_of(c.module)
                    local cidx = index_tensor(expand_keep(keep, g.size, c.base, c.mult, w:size(2)))
                    slice_param(c.module, "weight", 2, cidx)
                    c.module:set_config("in", cidx:numel())
                end
                summary.groups[#summary.groups + 1] = {name = g.name, before = g.size, after = #keep}
                summary.removed = summary.removed + g.size - #keep
            end
        end
    end
    return model, summary
end

-- ---- BatchNorm folding ----

-- Merges every BatchNorm that directly follows a Conv2d or Linear in a Sequential into it,
-- W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta, and
-- replaces the BatchNorm by Identity. For inference: the result matches eval-mode outputs.
function structure.fold_bn(model)
    local prev = core.set_grad_enabled(false)
    local ok, m, n = pcall(structure._fold_bn, model)
    core.set_grad_enabled(prev)
    if not ok then error(m, 2) end
    return m, n
end

function structure._fold_bn(model)
    local folded = 0
    for _, container in ipairs(model:modules()) do
        local kids = container:children()
        for i = 1, #kids - 1 do
            local a, b = kids[i], kids[i + 1]
            local ka, kb = a:kind(), b:kind()
            if (ka == "Conv2d" or ka == "Linear") and (kb == "BatchNorm2d" or kb == "BatchNorm1d")
                and container:kind() == "Sequential" then
                local cfg = b:config()
                local gamma, beta = param(b, "weight"), param(b, "bias")
                local mean, var
                for _, pt in ipairs(b:own_buffers()) do
                    if pt[1] == "running_mean" then mean = pt[2] else var = pt[2] end
                end
                local scale = gamma / (var + cfg.eps):sqrt()
                local target = a
                if not bias_of(a) then
                    local c = a:to_config()
                    c.bias = 1
                    target = require("prunert.nn").from_config(c)
                    local w = weight_of(a)
                    local mask = w:mask()
                    weight_of(target):copy_(w)
                    if mask then weight_of(target):set_mask(mask) end
                    bias_of(target):fill_(0)
                    container:set_child(i, target)
                end
                local w = weight_of(target)
                local shape = w:shape()
                local bshape = {shape[1]}
                for d = 2, #shape do bshape[d] = 1 end
                local mask = w:mask()
                w:set_mask(nil)
                w:mul_(scale:view(table.unpack(bshape)))
                if mask then w:set_mask(mask) end
                -- The folded bias is no longer the pruned one: its mask (if any) does not carry over.
                local bias = bias_of(target)
                bias:set_mask(nil)
                bias:copy_((bias - mean) * scale + beta)
                container:set_child(i + 1, core.module_new("Identity"))
                folded = folded + 1
            end
        end
    end
    return model, folded
end

return structure
