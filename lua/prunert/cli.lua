-- prunert.cli: command-line options for recipes, and the few chores every recipe shares.
--
--   local cli = require "prunert.cli"
--   local opt = cli.parse(arg, {
--       name = "lenet_l1", summary = "LeNet-5, L1 filter pruning",
--       cli.common{epochs = 2, amount = 0.5},            -- --help --epochs --data --out ... --limit
--       {"sensitivity", "flag", false, "choose per-layer amounts by a sensitivity analysis"},
--   })
--
-- An option is {name, type, default, help}; type is "int", "number", "string", "flag",
-- "numbers" (comma-separated list) or "choice" (with a fifth field: the allowed words).
-- `--name value`, `--name=value` and, for flags, `--name` / `--no-name` are accepted;
-- dashes and underscores in names are the same. A bad option or value is an error naming it
-- and the choices; --help prints every option with its default and exits.
local cli = {}

local function key(name) return (name:gsub("-", "_")) end
local function flag_name(name) return (name:gsub("_", "-")) end

local function parse_value(o, text)
    local name, kind = o[1], o[2]
    local function bad(what)
        error(string.format("--%s: %s, got '%s'", flag_name(name), what, text), 0)
    end
    if kind == "int" then
        local v = math.tointeger(tonumber(text))
        if not v then bad("expected an integer") end
        return v
    elseif kind == "number" then
        local v = tonumber(text)
        if not v or v ~= v then bad("expected a number") end
        return v
    elseif kind == "numbers" then
        local list = {}
        for part in (text .. ","):gmatch("([^,]*),") do
            local v = tonumber(part)
            if not v then bad("expected numbers separated by commas") end
            list[#list + 1] = v
        end
        if #list == 0 then bad("expected at least one number") end
        return list
    elseif kind == "choice" then
        for _, c in ipairs(o[5]) do if c == text then return text end end
        bad("expected one of " .. table.concat(o[5], ", "))
    elseif kind == "flag" then
        if text == "true" or text == "1" or text == "yes" then return true end
        if text == "false" or text == "0" or text == "no" then return false end
        bad("expected true or false")
    end
    return text
end

local function show_default(o)
    local d = o[3]
    if d == nil then return "" end
    if type(d) == "table" then d = table.concat(d, ",") end
    return " (default " .. tostring(d) .. ")"
end

-- The --help text.
function cli.usage(spec)
    local lines = {}
    lines[#lines + 1] = string.format("usage: prunert recipes/%s.lua [options]", spec.name or "recipe")
    if spec.summary then lines[#lines + 1] = "" lines[#lines + 1] = spec.summary end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "options:"
    for _, o in ipairs(cli.flatten(spec)) do
        local left = "--" .. flag_name(o[1])
        if o[2] ~= "flag" then left = left .. " " .. (o.metavar or (o[2] == "choice" and "WORD" or o[2] == "numbers" and "X,Y,..." or o[2]:upper())) end
        local help = o[4] or ""
        if o[2] == "choice" then help = help .. " [" .. table.concat(o[5], "|") .. "]" end
        lines[#lines + 1] = string.format("  %-26s %s%s", left, help, show_default(o))
    end
    lines[#lines + 1] = string.format("  %-26s %s", "--help", "print this help and exit")
    return table.concat(lines, "\n")
end

-- The option list of a spec with the nested lists from cli.common() spliced in.
function cli.flatten(spec)
    local out = {}
    local function add(list)
        for _, o in ipairs(list) do
            if type(o[1]) == "table" then add(o) else out[#out + 1] = o end
        end
    end
    add(spec)
    return out
end

-- Parses argv without side effects: returns the options table, or nil and the help text when
-- --help was given. Raises an error (level 0: no position) for a bad option.
function cli.parse_args(argv, spec)
    local opts = cli.flatten(spec)
    local by_name, values = {}, {}
    for _, o in ipairs(opts) do
        by_name[key(o[1])] = o
        local d = o[3]
        if type(d) == "table" then
            local c = {}
            for i, v in ipairs(d) do c[i] = v end
            d = c
        end
        values[key(o[1])] = d
    end
    local i = 1
    local n = argv and #argv or 0
    while i <= n do
        local a = argv[i]
        if a == "--help" or a == "-h" then return nil, cli.usage(spec) end
        local name, inline = a:match("^%-%-([%w_%-]+)=(.*)$")
        if not name then name = a:match("^%-%-([%w_%-]+)$") end
        if not name then
            error(string.format("unexpected argument '%s' (options start with --; see --help)", a), 0)
        end
        local k = key(name)
        local o = by_name[k]
        local negated = false
        if not o and k:sub(1, 3) == "no_" and by_name[k:sub(4)] and by_name[k:sub(4)][2] == "flag" then
            o, negated, k = by_name[k:sub(4)], true, k:sub(4)
        end
        if not o then
            local names = {}
            for _, x in ipairs(opts) do names[#names + 1] = "--" .. flag_name(x[1]) end
            error(string.format("unknown option '--%s' (options: %s, --help)", flag_name(name),
                table.concat(names, ", ")), 0)
        end
        if o[2] == "flag" then
            values[k] = inline and parse_value(o, inline) or not negated
        else
            local text = inline
            if not text then
                i = i + 1
                text = argv[i]
                if text == nil then error(string.format("--%s needs a value (%s)", flag_name(o[1]), o[2]), 0) end
            end
            values[k] = parse_value(o, text)
        end
        if o.check then
            local ok, why = o.check(values[k])
            if not ok then error(string.format("--%s: %s", flag_name(o[1]), why), 0) end
        end
        i = i + 1
    end
    return values
end

-- For recipes: parses `arg`; on --help prints the usage and exits 0; on a bad option prints the
-- message and exits 2 (a recipe is a program; a traceback would only hide the message).
-- Then applies --seed and --threads, and makes --out (default out/<name>).
function cli.parse(argv, spec)
    local ok, values, help = pcall(cli.parse_args, argv, spec)
    if not ok then
        io.stderr:write(spec.name or "recipe", ": ", tostring(values), "\n")
        os.exit(2)
    end
    if not values then
        print(help)
        os.exit(0)
    end
    local core = require "prunert.core"
    if values.seed then core.seed(values.seed) end
    if values.threads and values.threads > 0 then core.set_threads(values.threads) end
    if values.out == nil and spec.name then values.out = "out/" .. spec.name end
    if values.out then cli.mkdir(values.out) end
    return values
end

local function positive(v) return v > 0, "must be positive" end
local function non_negative(v) return v >= 0, "must not be negative" end
local function fractions(list)
    for _, v in ipairs(list) do
        if v < 0 or v > 1 then return false, "amounts must be in [0, 1]" end
    end
    return true
end

-- The options every recipe has; `defaults` sets their defaults (epochs, lr, amount(s),
-- limit, batch). Give amount = x for one amount, amounts = {..} for a list.
function cli.common(defaults)
    defaults = defaults or {}
    local list = {
        {"epochs", "int", defaults.epochs or 1, "training epochs", check = non_negative},
        {"lr", "number", defaults.lr or 0.01, "learning rate (SGD, momentum 0.9)", check = positive},
        {"batch", "int", defaults.batch or 64, "batch size", check = positive},
        {"data", "string", nil, "directory with MNIST-style IDX files (default: Fashion-MNIST)", metavar = "DIR"},
        {"limit", "int", defaults.limit, "use only the first N training and test images", check = positive},
        {"out", "string", nil, "output directory (default out/<recipe>)", metavar = "DIR"},
        {"threads", "int", nil, "threads for OpenBLAS and prunert's kernels", check = positive},
        {"seed", "int", defaults.seed or 1, "random seed"},
    }
    if defaults.amounts then
        list[#list + 1] = {"amounts", "numbers", defaults.amounts, defaults.amounts_help or "pruning amounts, comma-separated",
                           check = fractions}
    end
    if defaults.amount then
        list[#list + 1] = {"amount", "number", defaults.amount, defaults.amount_help or "fraction to prune",
                           check = function(v) return v >= 0 and v <= 1, "must be in [0, 1]" end}
    end
    return list
end

-- ---- chores ----

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function cli.mkdir(dir)
    local ok = os.execute("mkdir -p " .. quote(dir))
    if not ok then error("cannot create directory " .. dir, 0) end
    return dir
end

function cli.write_file(path, text)
    local f, err = io.open(path, "wb")
    if not f then error(err, 0) end
    f:write(text)
    f:close()
    return path
end

function cli.file_size(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local n = f:seek("end")
    f:close()
    return n
end

-- Train and test sets: Fashion-MNIST, or the IDX files in --data; --limit N keeps the first N
-- of each (a small slice for smoke runs). o.train_limit caps the training images further.
function cli.datasets(opt, o)
    local data = require "prunert.data"
    local load = opt.data and data.mnist or data.fashion_mnist
    local train_limit = opt.limit
    if o and o.train_limit then train_limit = math.min(train_limit or o.train_limit, o.train_limit) end
    local ok, train, test = pcall(function()
        return load{dir = opt.data, split = "train", limit = train_limit},
               load{dir = opt.data, split = "test", limit = opt.limit}
    end)
    if not ok then -- a missing or unreadable --data directory: the message, not a traceback
        io.stderr:write(opt.data and ("--data " .. opt.data .. ": ") or "", tostring(train), "\n")
        os.exit(1)
    end
    return train, test
end

-- CSV from a header list and rows (lists of values); strings with commas or quotes are quoted.
function cli.csv(header, rows)
    local function cell(v)
        if type(v) == "number" then
            if math.type(v) == "integer" then return tostring(v) end
            return string.format("%.6g", v)
        end
        v = tostring(v == nil and "" or v)
        if v:find('[,"\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
        return v
    end
    local lines = {}
    local function row(r)
        local cells = {}
        for i = 1, #header do cells[i] = cell(r[i]) end
        lines[#lines + 1] = table.concat(cells, ",")
    end
    row(header)
    for _, r in ipairs(rows) do row(r) end
    return table.concat(lines, "\n") .. "\n"
end

-- A plain text table: header list, rows of strings or numbers, left-aligned first column.
function cli.table(header, rows)
    local widths = {}
    local all = {header}
    for _, r in ipairs(rows) do all[#all + 1] = r end
    local text = {}
    for ri, r in ipairs(all) do
        text[ri] = {}
        for i = 1, #header do
            local v = r[i]
            if type(v) == "number" then v = math.type(v) == "integer" and tostring(v) or string.format("%.4g", v) end
            text[ri][i] = tostring(v == nil and "" or v)
            widths[i] = math.max(widths[i] or 0, utf8.len(text[ri][i]) or #text[ri][i])
        end
    end
    local lines = {}
    for ri, r in ipairs(text) do
        local cells = {}
        for i, v in ipairs(r) do
            local pad = string.rep(" ", widths[i] - (utf8.len(v) or #v))
            cells[i] = i == 1 and v .. pad or pad .. v
        end
        lines[#lines + 1] = table.concat(cells, "  ")
        if ri == 1 then
            local rule = {}
            for i = 1, #header do rule[i] = string.rep("-", widths[i]) end
            lines[#lines + 1] = table.concat(rule, "  ")
        end
    end
    return table.concat(lines, "\n")
end

return cli
