-- prunert.optim: SGD, Adam and AdamW with parameter groups, and learning-rate schedules.
--
-- The arithmetic of a step is one C call per parameter (runtime/core/optim.c), which also keeps
-- masked (pruned) weights and their optimizer state exactly at zero. What lives here is policy:
-- groups with their own options (to freeze or slow down sensitive layers), state, schedules.
local core = require "prunert.core"

local optim = {}

local Optimizer = {}
Optimizer.__index = Optimizer

local function is_tensor(v)
    local mt = getmetatable(v)
    return mt ~= nil and mt.__name == "prunert.Tensor"
end

-- params: a list of tensors, a module (its parameters), or a list of groups
-- { {params = {...}, lr = ...}, ... }; defaults fill what a group does not say.
local function make_groups(kind, params, defaults)
    if type(params) == "userdata" and params.parameters then params = params:parameters() end
    if type(params) ~= "table" or #params == 0 then
        error(kind .. ": expects a non-empty list of parameters or of parameter groups", 3)
    end
    local groups = {}
    local plain = is_tensor(params[1])
    for i, g in ipairs(plain and {{params = params}} or params) do
        if type(g) ~= "table" or type(g.params) ~= "table" then
            error(string.format("%s: group %d must be a table with a 'params' list", kind, i), 3)
        end
        local list = g.params
        if type(list) == "userdata" and list.parameters then list = list:parameters() end
        local group = {params = {}}
        for k, v in pairs(defaults) do group[k] = v end
        for k, v in pairs(g) do
            if k ~= "params" then
                if defaults[k] == nil and k ~= "frozen" then
                    error(string.format("%s: unknown option '%s' in group %d", kind, tostring(k), i), 3)
                end
                group[k] = v
            end
        end
        for j, p in ipairs(list) do
            if not is_tensor(p) then
                error(string.format("%s: parameter %d of group %d is not a tensor", kind, j, i), 3)
            end
            group.params[j] = p
        end
        group.initial_lr = group.lr
        groups[i] = group
    end
    return groups
end

local function new(kind, params, opts, defaults, step_fn)
    opts = opts or {}
    for k, v in pairs(opts) do
        if defaults[k] == nil then error(string.format("%s: unknown option '%s'", kind, tostring(k)), 3) end
        defaults[k] = v
    end
    if type(defaults.lr) ~= "number" or defaults.lr < 0 then
        error(kind .. ": lr must be a non-negative number", 3)
    end
    local self = setmetatable({kind = kind, groups = make_groups(kind, params, defaults),
                               state = {}, steps = 0, step_param = step_fn}, Optimizer)
    return self
end

-- One update of every parameter that has a gradient. Groups marked frozen (or lr 0) are skipped.
function Optimizer:step()
    self.steps = self.steps + 1
    for _, g in ipairs(self.groups) do
        if not g.frozen and g.lr > 0 then
            for _, p in ipairs(g.params) do
                if p:grad() then self.step_param(self, p, g) end
            end
        end
    end
end

function Optimizer:zero_grad()
    for _, g in ipairs(self.groups) do
        for _, p in ipairs(g.params) do p:zero_grad() end
    end
end

function Optimizer:set_lr(lr)
    for _, g in ipairs(self.groups) do g.lr = lr end
end

function Optimizer:get_lr() return self.groups[1].lr end

-- optim.SGD(params, {lr, momentum, dampening, nesterov, weight_decay, l1})
function optim.SGD(params, opts)
    local defaults = {lr = 0.01, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0, l1 = 0}
    return new("SGD", params, opts, defaults, function(self, p, g)
        local st = self.state[p]
        local first = false
        if not st then
            st = {}
            self.state[p] = st
            if g.momentum ~= 0 then st.buf = p:clone():zero_(); first = true end
        elseif g.momentum ~= 0 and not st.buf then
            st.buf = p:clone():zero_(); first = true
        end
        core.sgd_step(p, st.buf, g, first)
    end)
end

local function adam(kind, decoupled, default_wd)
    return function(params, opts)
        local defaults = {lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = default_wd, l1 = 0}
        local o = new(kind, params, opts, defaults, function(self, p, g)
            local st = self.state[p]
            if not st then
                st = {m = p:clone():zero_(), v = p:clone():zero_(), t = 0}
                self.state[p] = st
            end
            st.t = st.t + 1
            g.decoupled = decoupled
            core.adam_step(p, st.m, st.v, st.t, g)
        end)
        return o
    end
end
optim.Adam = adam("Adam", false, 0)
optim.AdamW = adam("AdamW", true, 1e-2)

-- ---- learning-rate schedules ----
-- Each schedule wraps an optimizer and sets every group's lr from the group's initial lr when
-- step() is called (once per epoch, or per batch: the caller decides, as in PyTorch).
local schedule = {}
optim.schedule = schedule

local Schedule = {}
Schedule.__index = Schedule

local function make_schedule(opt, lr_at)
    if getmetatable(opt) ~= Optimizer then error("schedule: first argument must be an optimizer", 3) end
    local s = setmetatable({optimizer = opt, t = 0, lr_at = lr_at}, Schedule)
    s:apply()
    return s
end

function Schedule:apply()
    for _, g in ipairs(self.optimizer.groups) do g.lr = self.lr_at(g.initial_lr, self.t) end
end

function Schedule:step()
    self.t = self.t + 1
    self:apply()
    return self.optimizer:get_lr()
end

function Schedule:get_lr() return self.optimizer:get_lr() end

-- lr * gamma ^ floor(t / step_size)
function schedule.step(opt, o)
    local size, gamma = o.step_size, o.gamma or 0.1
    if math.type(size) ~= "integer" or size < 1 then error("schedule.step: step_size must be a positive integer", 2) end
    return make_schedule(opt, function(lr, t) return lr * gamma ^ (t // size) end)
end

-- lr * gamma ^ (number of milestones reached)
function schedule.multistep(opt, o)
    local ms, gamma = o.milestones, o.gamma or 0.1
    if type(ms) ~= "table" then error("schedule.multistep: milestones must be a list", 2) end
    return make_schedule(opt, function(lr, t)
        local k = 0
        for _, m in ipairs(ms) do if t >= m then k = k + 1 end end
        return lr * gamma ^ k
    end)
end

-- eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
function schedule.cosine(opt, o)
    local T, eta_min = o.T_max, o.eta_min or 0
    if type(T) ~= "number" or T <= 0 then error("schedule.cosine: T_max must be positive", 2) end
    return make_schedule(opt, function(lr, t)
        t = math.min(t, T)
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / T)) / 2
    end)
end

-- Linear warm-up from start_factor * lr to lr over `steps`, then `after` (a function
-- (lr, t) -> lr, or nothing for a constant lr).
function schedule.warmup(opt, o)
    local n, f0 = o.steps, o.start_factor or 0.1
    if math.type(n) ~= "integer" or n < 1 then error("schedule.warmup: steps must be a positive integer", 2) end
    local after = o.after and o.after.lr_at
    return make_schedule(opt, function(lr, t)
        if t < n then return lr * (f0 + (1 - f0) * t / n) end
        return after and after(lr, t - n) or lr
    end)
end

-- A schedule used only as `after` for warmup does not need an optimizer: a template.
function schedule.template(kind, o)
    local fake = setmetatable({groups = {}}, Optimizer)
    return schedule[kind](fake, o)
end

optim.Optimizer = Optimizer
return optim
