-- prunert.data: data sets and batches.
--
-- Fashion-MNIST from Debian's dataset-fashion-mnist package is the default; MNIST or any IDX
-- pair is read from a directory the user names; CSV for tabular data. Images come out as float32
-- N x 1 x 28 x 28 in [0,1], labels as int64 class ids 1..C (Lua counts from 1, as Torch7).
local core = require "prunert.core"

local data = {}

local DEFAULT_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

local Dataset = {}
data.Dataset = Dataset

-- Image data sets keep their pixels as bytes (60k Fashion-MNIST images: 47 MB instead of 188 MB
-- as float32) and scale each batch as it is drawn; ds.x, the whole set as float32, is made
-- only if someone asks for it.
Dataset.__index = function(t, k)
    if k == "x" then
        local u8 = rawget(t, "u8")
        if u8 then
            local x = core.bytes_to_float(u8, t.scale)
            rawset(t, "x", x)
            return x
        end
        return nil
    end
    return Dataset[k]
end

local function check_pair(x, y, who)
    if y ~= nil and x:size(1) ~= y:size(1) then
        error(string.format("%s: %d inputs but %d labels", who, x:size(1), y:size(1)), 3)
    end
end

-- data.dataset(x, y [, info]): x [N, ...], y [N] (or nil for unlabelled data).
function data.dataset(x, y, info)
    check_pair(x, y, "dataset")
    return setmetatable({x = x, y = y, info = info or {}}, Dataset)
end

-- An image data set stored as bytes: batches come out as float32 bytes * scale.
function data.byte_dataset(u8, y, scale, info)
    check_pair(u8, y, "dataset")
    return setmetatable({u8 = u8, scale = scale, y = y, info = info or {}}, Dataset)
end

-- The stored inputs (bytes for an image set) and a function making model inputs of them.
local function source(self)
    local u8 = rawget(self, "u8")
    if u8 then
        local scale = self.scale
        return u8, function(t) return core.bytes_to_float(t, scale) end
    end
    return self.x, function(t) return t end
end

local function derive(self, x, y)
    if rawget(self, "u8") then return data.byte_dataset(x, y, self.scale, self.info) end
    return data.dataset(x, y, self.info)
end

function Dataset:size() return (rawget(self, "u8") or self.x):size(1) end
Dataset.__len = Dataset.size

-- Rows first..last (1-based, inclusive), as views: no copy.
function Dataset:subset(first, last)
    local n = self:size()
    last = last or n
    if math.type(first) ~= "integer" or math.type(last) ~= "integer" or first < 1 or last > n or first > last + 1 then
        error(string.format("subset: range %s..%s is outside 1..%d", tostring(first), tostring(last), n), 2)
    end
    local count = last - first + 1
    local x = source(self)
    return derive(self, x:narrow(1, first, count), self.y and self.y:narrow(1, first, count))
end

-- Splits off a validation set: `val` is a count or a fraction; rows are drawn by a seeded
-- permutation so the split is the same on every machine. Returns train, val.
function Dataset:split(val, opts)
    local n = self:size()
    local nval = val
    if math.type(val) ~= "integer" then
        if type(val) ~= "number" or val <= 0 or val >= 1 then
            error("split: give a count of rows or a fraction in (0, 1)", 2)
        end
        nval = math.floor(n * val + 0.5)
    end
    if nval < 1 or nval >= n then error(string.format("split: %d of %d rows leaves an empty side", nval, n), 2) end
    if opts and opts.seed then core.seed(opts.seed) end
    local perm = core.randperm(n)
    local x = source(self)
    local function take(s, c)
        return derive(self, core.gather_rows(x, perm, s, c), self.y and core.gather_rows(self.y, perm, s, c))
    end
    return take(nval + 1, n - nval), take(1, nval)
end

-- for x, y, i in ds:batches{batch = 64, shuffle = true, drop_last = false} do ... end
-- Unshuffled batches of a float set are views of the data (no copy); shuffled ones are gathered
-- row by row in one pass from a permutation drawn from the runtime's seeded generator; an image
-- set's batches are scaled from bytes in that same pass. The second value returned is the
-- number of batches.
function Dataset:batches(opts)
    opts = opts or {}
    local bs = opts.batch or 64
    if math.type(bs) ~= "integer" or bs < 1 then error("batches: batch must be a positive integer", 2) end
    local n = self:size()
    local nb = opts.drop_last and n // bs or (n + bs - 1) // bs
    local perm = opts.shuffle and core.randperm(n) or nil
    local x, as_input = source(self)
    local y, i = self.y, 0
    return function()
        i = i + 1
        if i > nb then return nil end
        local s = (i - 1) * bs + 1
        local c = math.min(bs, n - s + 1)
        if perm then
            return as_input(core.gather_rows(x, perm, s, c)), y and core.gather_rows(y, perm, s, c), i
        end
        return as_input(x:narrow(1, s, c)), y and y:narrow(1, s, c), i
    end, nb
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

-- Finds NAME or NAME.gz in dir.
local function find(dir, name)
    for _, p in ipairs({dir .. "/" .. name, dir .. "/" .. name .. ".gz"}) do
        if exists(p) then return p end
    end
    return nil
end

local function read_idx(path, limit)
    local t, err = core.io.read_idx(path, limit)
    if not t then error(err, 0) end
    return t
end

-- Reads an IDX image file and its label file into a Dataset (images scaled to [0,1]).
function data.idx(images_path, labels_path, opts)
    opts = opts or {}
    local imgs = read_idx(images_path, opts.limit)
    local labels = read_idx(labels_path, opts.limit)
    if imgs:dim() ~= 3 then
        error(string.format("%s: expected N x H x W images, got %d dimensions", images_path, imgs:dim()), 2)
    end
    if imgs:size(1) ~= labels:size(1) then
        error(string.format("%s has %d images but %s has %d labels", images_path, imgs:size(1),
            labels_path, labels:size(1)), 2)
    end
    local u8 = imgs:view(imgs:size(1), 1, imgs:size(2), imgs:size(3))
    local y = core.labels_from_bytes(labels, 1)
    return data.byte_dataset(u8, y, 1 / 255, {images = images_path, labels = labels_path, classes = 10})
end

local function mnist_like(opts, what, default_dir, package)
    opts = opts or {}
    local split = opts.split or "train"
    if split ~= "train" and split ~= "test" then
        error(what .. ": split must be \"train\" or \"test\", got " .. tostring(split), 3)
    end
    local dir = opts.dir or os.getenv("PRUNERT_DATA") or default_dir
    if not dir then error(what .. ": give dir = the directory holding the IDX files", 3) end
    local prefix = split == "train" and "train" or "t10k"
    local img_name, lab_name = prefix .. "-images-idx3-ubyte", prefix .. "-labels-idx1-ubyte"
    local imgs, labs = find(dir, img_name), find(dir, lab_name)
    if not imgs or not labs then
        local hint = package and string.format(
            "install Debian's package (apt-get install %s), or pass dir= / set PRUNERT_DATA", package)
            or "pass dir= the directory that holds them, or set PRUNERT_DATA"
        error(string.format("%s: %s(.gz) not found in %s: %s", what, imgs and lab_name or img_name, dir, hint), 3)
    end
    local ds = data.idx(imgs, labs, {limit = opts.limit})
    ds.info.name = what
    ds.info.split = split
    return ds
end

-- data.fashion_mnist{split = "train"|"test", dir = ..., limit = N}
function data.fashion_mnist(opts)
    return mnist_like(opts, "Fashion-MNIST", DEFAULT_FASHION_DIR, "dataset-fashion-mnist")
end

-- data.mnist{dir = ..., split = ..., limit = N}
function data.mnist(opts)
    return mnist_like(opts, "MNIST", nil, nil)
end

data.FASHION_MNIST_CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                              "Shirt", "Sneaker", "Bag", "Ankle boot"}

-- data.csv(path, {header = true, label = "last"|"first"|column number|nil, sep = ","})
-- Numbers only; labels become int64 class ids as written in the file (plus label_base).
function data.csv(path, opts)
    opts = opts or {}
    local f, err = io.open(path, "r")
    if not f then error("csv: " .. err, 2) end
    local sep = opts.sep or ","
    local rows, header, width = {}, nil, nil
    local lineno = 0
    for line in f:lines() do
        lineno = lineno + 1
        line = line:gsub("\r$", "")
        if line ~= "" then
            local fields = {}
            for field in (line .. sep):gmatch("(.-)" .. sep:gsub("%p", "%%%0")) do fields[#fields + 1] = field end
            if opts.header ~= false and not header and lineno == 1 and not tonumber(fields[1]) then
                header = fields
            else
                if width and #fields ~= width then
                    f:close()
                    error(string.format("csv: %s:%d has %d fields, expected %d", path, lineno, #fields, width), 2)
                end
                width = #fields
                local row = {}
                for i, v in ipairs(fields) do
                    local num = tonumber(v)
                    if not num then
                        f:close()
                        error(string.format("csv: %s:%d field %d is not a number: '%s'", path, lineno, i, v), 2)
                    end
                    row[i] = num
                end
                rows[#rows + 1] = row
            end
        end
    end
    f:close()
    if #rows == 0 then error("csv: " .. path .. " has no data rows", 2) end
    local label = opts.label
    if label == "last" then label = width elseif label == "first" then label = 1 end
    local xs, ys = {}, {}
    for r, row in ipairs(rows) do
        local xr = {}
        for i, v in ipairs(row) do
            if i == label then ys[r] = math.tointeger(v) or error(string.format(
                "csv: %s row %d: label %s is not an integer", path, r, tostring(v)), 2)
            else xr[#xr + 1] = v end
        end
        xs[r] = xr
    end
    local x = core.tensor(xs)
    local y = label and core.tensor(ys, "int64") or nil
    return data.dataset(x, y, {path = path, header = header})
end

return data
