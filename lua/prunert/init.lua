-- prunert: the Lua library's entry. `local pr = require "prunert"`.
--
-- Everything in the C module (prunert.core) is re-exported as it is; this file adds what is
-- easier said in Lua: grad-mode helpers and lazy access to the library's Lua modules
-- (pr.nn, pr.optim, pr.data, ... load on first use, so requiring prunert stays cheap and a
-- module file added later needs no edit here).
local core = require "prunert.core"

local pr = {}
for k, v in pairs(core) do pr[k] = v end
pr.core = core

-- pr.no_grad(fn, ...): runs fn with autograd recording off and restores the previous mode,
-- also when fn raises (the error is passed on unchanged). Returns fn's results.
function pr.no_grad(fn, ...)
    if type(fn) ~= "function" then
        error("bad argument #1 to 'no_grad' (function expected, got " .. type(fn) .. ")", 2)
    end
    local prev = core.set_grad_enabled(false)
    local res = table.pack(pcall(fn, ...))
    core.set_grad_enabled(prev)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

-- `local g <close> = pr.no_grad_scope()`: recording is off until g goes out of scope (or
-- g:close() is called); closing twice is harmless.
local Scope = {}
Scope.__index = Scope
function Scope:close()
    if not self.closed then
        self.closed = true
        core.set_grad_enabled(self.prev)
    end
end
Scope.__close = Scope.close
Scope.__name = "prunert.GradScope"

function pr.no_grad_scope()
    return setmetatable({prev = core.set_grad_enabled(false), closed = false}, Scope)
end

-- The same as a scope that turns recording on (inside a no_grad region).
function pr.enable_grad_scope()
    return setmetatable({prev = core.set_grad_enabled(true), closed = false}, Scope)
end

pr.manual_seed = pr.seed

-- Whole-model files live in prunert.model; these load it on first call.
for name, fn in pairs({save = "save", load = "load", info = "info"}) do
    pr[name] = function(...) return require("prunert.model")[fn](...) end
end

-- Lazy submodules: pr.nn == require "prunert.nn", found on package.path.
setmetatable(pr, {
    __index = function(t, k)
        if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then return nil end
        local name = "prunert." .. k
        if not package.loaded[name] and not package.searchpath(name, package.path) then
            return nil
        end
        local m = require(name)
        rawset(t, k, m)
        return m
    end,
})

return pr
