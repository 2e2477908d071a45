-- prunert.nn: layers and containers the way PyTorch and Torch7 users write them.
--
-- Every layer is a C module (runtime/core/module.h) so the graph belongs to the runtime: a C
-- host can run it, the model file stores it, pruning can slice it. This file adds what is policy
-- or convenience: constructors with Lua's 1-based dims, dotted parameter names, state_dict,
-- printing with parameter counts, and rebuilding a model from its configuration tree.
local core = require "prunert.core"

local nn = {}
local Module = core.Module -- the methods table of every module userdata

local function pair(v, what, layer)
    if v == nil then return nil, nil end
    if type(v) == "number" then return v, v end
    if type(v) == "table" and #v == 2 then return v[1], v[2] end
    error(string.format("%s: %s must be a number or a pair {h, w}", layer, what), 3)
end

local function opts_of(t, layer, allowed)
    if t == nil then return {} end
    if type(t) ~= "table" then
        error(string.format("%s: options must be a table, got %s", layer, type(t)), 3)
    end
    for k in pairs(t) do
        if not allowed[k] then
            error(string.format("%s: unknown option '%s'", layer, tostring(k)), 3)
        end
    end
    return t
end

local function positive_int(v, what, layer)
    if math.type(v) ~= "integer" or v <= 0 then
        error(string.format("%s: %s must be a positive integer, got %s", layer, what, tostring(v)), 3)
    end
    return v
end

function nn.Linear(inf, outf, opts)
    positive_int(inf, "in_features", "Linear")
    positive_int(outf, "out_features", "Linear")
    opts = opts_of(opts, "Linear", {bias = true})
    return core.module_new("Linear", {["in"] = inf, out = outf, bias = opts.bias ~= false})
end

function nn.Conv2d(inc, outc, kernel, opts)
    positive_int(inc, "in_channels", "Conv2d")
    positive_int(outc, "out_channels", "Conv2d")
    opts = opts_of(opts, "Conv2d", {stride = true, padding = true, dilation = true, groups = true, bias = true})
    local kh, kw = pair(kernel, "kernel size", "Conv2d")
    if not kh then error("Conv2d: kernel size is required", 2) end
    local sh, sw = pair(opts.stride or 1, "stride", "Conv2d")
    local ph, pw = pair(opts.padding or 0, "padding", "Conv2d")
    local dh, dw = pair(opts.dilation or 1, "dilation", "Conv2d")
    return core.module_new("Conv2d", {
        ["in"] = inc, out = outc, kh = kh, kw = kw, stride_h = sh, stride_w = sw, pad_h = ph,
        pad_w = pw, dil_h = dh, dil_w = dw, groups = opts.groups or 1, bias = opts.bias ~= false,
    })
end

local function batchnorm(kind)
    return function(features, opts)
        positive_int(features, "num_features", kind)
        opts = opts_of(opts, kind, {eps = true, momentum = true})
        return core.module_new(kind, {features = features, eps = opts.eps, momentum = opts.momentum})
    end
end
nn.BatchNorm1d = batchnorm("BatchNorm1d")
nn.BatchNorm2d = batchnorm("BatchNorm2d")

function nn.ReLU() return core.module_new("ReLU") end
function nn.Sigmoid() return core.module_new("Sigmoid") end
function nn.Tanh() return core.module_new("Tanh") end
function nn.Identity() return core.module_new("Identity") end
function nn.GlobalAvgPool2d() return core.module_new("GlobalAvgPool2d") end
function nn.LeakyReLU(slope) return core.module_new("LeakyReLU", {slope = slope or 0.01}) end
function nn.Dropout(p) return core.module_new("Dropout", {p = p or 0.5}) end
-- dims are 1-based in Lua: Softmax(2) is PyTorch's Softmax(dim=1), over the classes.
function nn.Softmax(dim) return core.module_new("Softmax", {dim = (dim or 2) - 1}) end
function nn.LogSoftmax(dim) return core.module_new("LogSoftmax", {dim = (dim or 2) - 1}) end
function nn.Flatten(start_dim) return core.module_new("Flatten", {start_dim = (start_dim or 2) - 1}) end

local function pool(kind)
    return function(kernel, opts)
        opts = opts_of(opts, kind, {stride = true, padding = true})
        local kh, kw = pair(kernel, "kernel size", kind)
        if not kh then error(kind .. ": kernel size is required", 2) end
        local sh, sw = pair(opts.stride or kernel, "stride", kind)
        local ph, pw = pair(opts.padding or 0, "padding", kind)
        return core.module_new(kind, {kh = kh, kw = kw, stride_h = sh, stride_w = sw, pad_h = ph, pad_w = pw})
    end
end
nn.MaxPool2d = pool("MaxPool2d")
nn.AvgPool2d = pool("AvgPool2d")

local function check_module(m, i, who)
    if getmetatable(m) == nil or getmetatable(m).__index ~= Module then
        error(string.format("%s: argument %d is not a module (got %s)", who, i, type(m)), 3)
    end
end

local function container(kind, ...)
    local args = {...}
    if #args == 1 and getmetatable(args[1]) == nil and type(args[1]) == "table" then args = args[1] end
    local c = core.module_new(kind)
    for i, m in ipairs(args) do
        check_module(m, i, kind)
        c:add(m)
    end
    return c
end

function nn.Sequential(...) return container("Sequential", ...) end

-- Residual(body [, shortcut]): body(x) + shortcut(x), identity shortcut when none is given.
function nn.Residual(body, shortcut)
    check_module(body, 1, "Residual")
    local r = core.module_new("Residual", {shortcut = shortcut ~= nil})
    r:add(body)
    if shortcut then
        check_module(shortcut, 2, "Residual")
        r:add(shortcut)
    end
    return r
end

-- Concat(branch, branch, ... [, {dim = 2}]): branches' outputs joined along dim (channels).
function nn.Concat(...)
    local args = {...}
    local dim = 2
    if type(args[#args]) == "table" and getmetatable(args[#args]) == nil then
        dim = table.remove(args).dim or 2
    end
    local c = core.module_new("Concat", {dim = dim - 1})
    for i, m in ipairs(args) do
        check_module(m, i, "Concat")
        c:add(m)
    end
    return c
end

-- ---- walking the tree ----

-- Depth-first, parents first, with PyTorch's dotted paths ("features.3"; the root is "").
function Module:named_modules()
    local out = {}
    local function walk(m, path)
        out[#out + 1] = {path, m}
        for i, c in ipairs(m:children()) do
            walk(c, path == "" and tostring(i - 1) or (path .. "." .. (i - 1)))
        end
    end
    walk(self, "")
    local i = 0
    return function()
        i = i + 1
        if out[i] then return out[i][1], out[i][2] end
    end
end

function Module:modules()
    local list = {}
    for _, m in self:named_modules() do list[#list + 1] = m end
    return list
end

local function named(self, getter)
    local out = {}
    for path, m in self:named_modules() do
        for _, pt in ipairs(m[getter](m)) do
            out[#out + 1] = {path == "" and pt[1] or (path .. "." .. pt[1]), pt[2], m}
        end
    end
    return out
end

-- for name, p in model:named_parameters() do ... end   ("features.3.weight", tensor)
function Module:named_parameters()
    local list, i = named(self, "own_params"), 0
    return function()
        i = i + 1
        if list[i] then return list[i][1], list[i][2], list[i][3] end
    end
end

function Module:named_buffers()
    local list, i = named(self, "own_buffers"), 0
    return function()
        i = i + 1
        if list[i] then return list[i][1], list[i][2], list[i][3] end
    end
end

function Module:parameters()
    local list = {}
    for _, p in self:named_parameters() do list[#list + 1] = p end
    return list
end

function Module:num_parameters()
    local n = 0
    for _, p in self:named_parameters() do n = n + p:numel() end
    return n
end

function Module:zero_grad()
    for _, p in self:named_parameters() do p:zero_grad() end
    return self
end

function Module:eval() return self:train(false) end

-- ---- state ----

-- name -> tensor for parameters and buffers; a parameter's mask is "<name>_mask" (PyTorch's
-- prune module spells it the same way). The tensors are shared, not copied.
function Module:state_dict()
    local sd = {}
    for name, p in self:named_parameters() do
        sd[name] = p
        local mask = core.param_mask(p)
        if mask then sd[name .. "_mask"] = mask end
    end
    for name, b in self:named_buffers() do sd[name] = b end
    return sd
end

-- Copies values in (the model's tensors stay the same objects, so optimizers keep working;
-- execution plans pack themselves again). "<param>_mask" entries set masks. strict (default):
-- a missing, extra or wrongly shaped entry is an error naming it. A PyTorch state dict saved
-- with np.savez(p, **{k: v.numpy() for k, v in m.state_dict().items()}) loads as
-- pr.io.load_npz(p) into the same architecture built here (num_batches_tracked, which prunert
-- does not use, is ignored). The work is pr_module_load_state's, which model files use too.
function Module:load_state_dict(sd, opts)
    if type(sd) ~= "table" then error("load_state_dict: expected a table of tensors by name", 2) end
    local strict = not (opts and opts.strict == false)
    local ok, err = pcall(core.module_load_state, self, sd, strict)
    if not ok then error(err, 2) end
    return self
end

-- ---- configuration tree (what the model file stores) ----

function Module:to_config()
    local cfg = self:config()
    local kids = self:children()
    if #kids > 0 then
        cfg.children = {}
        for i, c in ipairs(kids) do cfg.children[i] = c:to_config() end
    end
    return cfg
end

-- Rebuilds a module tree from to_config()'s output. Only known kinds and numeric options are
-- accepted, so a configuration read from a file can never run code (pr_module_from_config,
-- which loading a model file uses too).
function nn.from_config(cfg)
    local ok, m = pcall(core.io.module_from_config, cfg)
    if not ok then error(m, 2) end
    return m
end

-- ---- printing ----

local function count(m)
    local n = 0
    for _, pt in ipairs(m:own_params()) do n = n + pt[2]:numel() end
    return n
end

function Module:describe()
    local c = self:config()
    local k = c.kind
    if k == "Linear" then
        return string.format("Linear(%d -> %d%s)", c["in"], c.out, c.bias == 0 and ", no bias" or "")
    elseif k == "Conv2d" then
        local s = string.format("Conv2d(%d -> %d, %dx%d", c["in"], c.out, c.kh, c.kw)
        if c.stride_h ~= 1 or c.stride_w ~= 1 then s = s .. string.format(", stride %dx%d", c.stride_h, c.stride_w) end
        if c.pad_h ~= 0 or c.pad_w ~= 0 then s = s .. string.format(", pad %dx%d", c.pad_h, c.pad_w) end
        if c.dil_h ~= 1 or c.dil_w ~= 1 then s = s .. string.format(", dilation %dx%d", c.dil_h, c.dil_w) end
        if c.groups ~= 1 then s = s .. string.format(", groups %d", c.groups) end
        return s .. ")"
    elseif k == "BatchNorm1d" or k == "BatchNorm2d" then
        return string.format("%s(%d)", k, c.features)
    elseif k == "MaxPool2d" or k == "AvgPool2d" then
        return string.format("%s(%dx%d, stride %dx%d)", k, c.kh, c.kw, c.stride_h, c.stride_w)
    elseif k == "Dropout" then
        return string.format("Dropout(p=%g)", c.p)
    elseif k == "LeakyReLU" then
        return string.format("LeakyReLU(%g)", c.slope)
    end
    return k
end

local function render(m, indent, name, lines)
    local n = count(m)
    local head = indent .. (name and ("(" .. name .. "): ") or "") .. m:describe()
    if n > 0 then head = head .. string.format("  [%d params]", n) end
    lines[#lines + 1] = head
    for i, c in ipairs(m:children()) do render(c, indent .. "  ", tostring(i - 1), lines) end
end

getmetatable(core.module_new("Identity")).__tostring = function(m)
    local lines = {}
    render(m, "", nil, lines)
    lines[#lines + 1] = string.format("total: %d parameters", m:num_parameters())
    return table.concat(lines, "\n")
end

-- ---- masks as tensor methods: p:set_mask(m), p:mask(), p:apply_mask() ----
do
    local methods = getmetatable(core.zeros(1)).__index
    if type(methods) == "table" then
        methods.set_mask = core.param_set_mask
        methods.mask = core.param_mask
        methods.apply_mask = core.param_apply_mask
    end
end

-- ---- functional forms ----
local F = {}
nn.functional = F
-- targets: int64 class labels 1..C (Lua's convention, as Torch7's ClassNLLCriterion).
function F.cross_entropy(logits, targets, reduction) return core.cross_entropy(logits, targets, reduction) end
function F.nll_loss(logp, targets, reduction) return core.nll_loss(logp, targets, reduction) end
function F.mse_loss(x, y, reduction) return core.mse_loss(x, y, reduction) end

return nn
