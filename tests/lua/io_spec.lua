-- io_spec.lua: pr.io (IDX, .npz, model files) and pr.json from Lua. Fixtures made by numpy are
-- in tests/data (make_fixtures.py); the rest is written to temporary files. Expected failures
-- are nil, message; bad argument types raise.
local pr = require "prunert"

local DATA = (os.getenv("PRUNERT_SOURCE_DIR") or ".") .. "/tests/data/"
local FASHION = "/usr/share/datasets/fashion-mnist/"

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function spit(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

-- A fresh temporary path (os.tmpname creates the file; writers replace it).
local made = {}
local function tmp(suffix)
    local base = os.tmpname()
    local p = base .. (suffix or "")
    made[#made + 1] = base
    made[#made + 1] = p
    return p
end

teardown(function()
    for _, p in ipairs(made) do os.remove(p) end
end)

local function fails(wants, ok, msg)
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.is_truthy(msg:find(wants, 1, true), string.format("message %q lacks %q", msg, wants))
end

describe("pr.io IDX", function()
    it("round-trips uint8, float32 and int64, raw and gzip", function()
        for _, suffix in ipairs({".idx", ".idx.gz"}) do
            local u = pr.tensor({{{0, 1}, {2, 255}}, {{7, 8}, {9, 10}}}, "uint8")
            local p = tmp(suffix)
            assert.is_true(pr.io.write_idx(p, u))
            local r = pr.io.read_idx(p)
            assert.are.equal("uint8", r:dtype())
            assert.are.same(u:totable(), r:totable())
            local part = pr.io.read_idx(p, 1)
            assert.are.same({1, 2, 2}, part:shape())
        end
        local f = pr.tensor({{1.5, -2}, {3.25, 1e-3}}):t()
        local p = tmp(".idx")
        assert.is_true(pr.io.write_idx(p, f))
        local r = pr.io.read_idx(p)
        assert.are.equal("float32", r:dtype())
        assert.are.same(f:totable(), r:totable())
        local l = pr.tensor({-5, 0, 2147483647}, "int64")
        assert.is_true(pr.io.write_idx(p, l))
        assert.are.same({-5, 0, 2147483647}, pr.io.read_idx(p):totable())
        fails("does not fit", pr.io.write_idx(p, pr.tensor({2 ^ 40}, "int64")))
    end)

    it("reads the real Fashion-MNIST test labels", function()
        if not exists(FASHION .. "t10k-labels-idx1-ubyte.gz") then
            print("skipped: dataset-fashion-mnist is not installed")
            return
        end
        local l = assert(pr.io.read_idx(FASHION .. "t10k-labels-idx1-ubyte.gz", 100))
        assert.are.same({100}, l:shape())
        assert.are.same({9, 2, 1, 1, 6}, {l:get(1), l:get(2), l:get(3), l:get(4), l:get(5)})
        local im = assert(pr.io.read_idx(FASHION .. "t10k-images-idx3-ubyte.gz", 2))
        assert.are.same({2, 28, 28}, im:shape())
    end)

    it("refuses damaged files with nil, message", function()
        local p = tmp(".idx")
        spit(p, "\0\0\8\1\0\0\0\20" .. string.rep("\3", 5))
        fails("truncated: expected 20 bytes of data, got 5", pr.io.read_idx(p))
        spit(p, "\0\0\8\1\0\0\0\2" .. "abc")
        fails("trailing bytes", pr.io.read_idx(p))
        spit(p, "PK\3\4")
        fails("bad magic", pr.io.read_idx(p))
        fails("cannot open", pr.io.read_idx(p .. ".absent"))
        fails("cannot create", pr.io.write_idx("/nonexistent-dir/x.idx", pr.zeros(2)))
    end)

    it("raises on bad arguments", function()
        assert.has_error(function() pr.io.read_idx() end)
        assert.has_error(function() pr.io.read_idx("x", -1) end)
        assert.has_error(function() pr.io.write_idx("x", {1, 2}) end)
    end)
end)

describe("pr.io npz", function()
    it("loads numpy's own files", function()
        local t = assert(pr.io.load_npz(DATA .. "basic.npz"))
        assert.are.same({{-1, -0.5, 0}, {0.5, 1, 1.5}}, t.a:totable())
        assert.are.equal("float32", t.d:dtype())
        assert.are.equal(-2.25, t.d:get(2))
        assert.are.same({-3, 0, 2 ^ 40, 7}, t.i:totable())
        assert.are.equal("int64", t.i4:dtype())
        assert.are.same({0, 7, 255}, t.u:totable())
        assert.are.same({1, 0, 1, 1}, t.b:totable())
        assert.are.same({{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}, t.f:totable())
        assert.are.same({}, t.s:shape())
        assert.are.equal(3.25, t.s:item())
        assert.are.same({0, 3}, t.e:shape())
        local z = assert(pr.io.load_npz(DATA .. "compressed.npz"))
        assert.are.same(t.f:totable(), z.f:totable())
        local v2 = assert(pr.io.load_npz(DATA .. "v2.npz"))
        assert.are.same({0, 2, 4, 6, 8}, v2.v2:totable())
        fails("big-endian", pr.io.load_npz(DATA .. "bigendian.npz"))
        fails("never executes", pr.io.load_npz(DATA .. "object.npz"))
        fails("cannot open", pr.io.load_npz(DATA .. "absent.npz"))
    end)

    it("round-trips stored and compressed", function()
        local arrays = {
            w = pr.randn(3, 4), wt = pr.randn(4, 3):t(), idx = pr.tensor({1, -2, 3}, "int64"),
            m = pr.tensor({{1, 0}, {0, 1}}, "uint8"), s = pr.tensor(0.25),
        }
        for _, compress in ipairs({false, true}) do
            local p = tmp(".npz")
            assert.is_true(pr.io.save_npz(p, arrays, {compress = compress}))
            local back = assert(pr.io.load_npz(p))
            for k, v in pairs(arrays) do
                assert.are.equal(v:dtype(), back[k]:dtype())
                assert.are.same(v:shape(), back[k]:shape())
                if #v:shape() > 0 then assert.are.same(v:totable(), back[k]:totable()) end
            end
            assert.are.equal(0.25, back.s:item())
        end
        -- same arrays, same bytes: names are sorted and zip times fixed
        local p1, p2 = tmp(".npz"), tmp(".npz")
        pr.io.save_npz(p1, arrays)
        pr.io.save_npz(p2, arrays)
        assert.are.equal(slurp(p1), slurp(p2))
        local bytes = slurp(p1)
        spit(p1, bytes:sub(1, #bytes - 30))
        assert.is_nil((pr.io.load_npz(p1)))
        assert.has_error(function() pr.io.save_npz(p1, {x = 1}) end)
        assert.has_error(function() pr.io.save_npz(p1, {pr.zeros(1)}) end)
    end)
end)

describe("pr.io model files", function()
    local manifest = {
        arch = "lenet", version = 3, ratio = 0.5, pruned = true,
        layers = {{type = "conv2d", out = 6}, {type = "linear", out = 10}},
        provenance = {criterion = "l1", schedule = pr.json.array()},
    }

    it("round-trips the manifest and tensors", function()
        local tensors = {
            ["conv1.weight"] = pr.randn(6, 1, 5, 5), ["conv1.weight.mask"] = pr.ones(6, 1, 5, 5, "uint8"),
            ["fc.bias"] = pr.zeros(10), ["perm"] = pr.tensor({3, 1, 2}, "int64"),
        }
        local p = tmp(".prt")
        assert.is_true(pr.io.write_model_file(p, manifest, tensors, {level = 9}))
        local m, t = pr.io.read_model_file(p)
        assert.is_table(m)
        assert.are.equal("lenet", m.arch)
        assert.are.equal(3, m.version)
        assert.is_true(math.type(m.version) == "integer")
        assert.are.equal(0.5, m.ratio)
        assert.are.equal("linear", m.layers[2].type)
        assert.are.same({}, m.provenance.schedule)
        for k, v in pairs(tensors) do
            assert.are.same(v:totable(), t[k]:totable())
            assert.are.equal(v:dtype(), t[k]:dtype())
        end
        local chunks, version = pr.io.model_file_info(p)
        assert.are.equal(pr.io.model_file_version, version)
        assert.are.equal(5, #chunks)
        assert.are.equal("manifest", chunks[1].kind)
        local by = {}
        for _, c in ipairs(chunks) do by[c.name] = c end
        assert.are.same({6, 1, 5, 5}, by["conv1.weight"].shape)
        assert.are.equal("float32", by["conv1.weight"].dtype)
        assert.are.equal("dense", by["conv1.weight"].encoding)
        assert.are.equal(600, by["conv1.weight"].raw_bytes)
        assert.is_true(by["conv1.weight.mask"].stored_bytes < 150) -- all ones compress well
    end)

    it("refuses damaged files and leaves the target alone on failure", function()
        local p = tmp(".prt")
        assert.is_true(pr.io.write_model_file(p, manifest, {w = pr.randn(4, 4)}))
        local good = slurp(p)
        spit(p, good:sub(1, #good - 5))
        fails("truncated", pr.io.read_model_file(p))
        local i = #good - 30
        spit(p, good:sub(1, i - 1) .. string.char(good:byte(i) ~ 1) .. good:sub(i + 1))
        fails("CRC mismatch", pr.io.read_model_file(p))
        fails("CRC mismatch", pr.io.model_file_info(p))
        spit(p, good:sub(1, 8) .. "\7\0\0\0" .. good:sub(13))
        fails("format version 7 is newer than this prunert (1); upgrade prunert", pr.io.read_model_file(p))
        spit(p, good)
        -- a manifest that cannot be encoded raises before anything is written
        assert.has_error(function() pr.io.write_model_file(p, {f = print}, {}) end, nil)
        assert.has_error(function() pr.io.write_model_file(p, {}, {w = pr.zeros(1)}, {encodings = {w = "zip"}}) end)
        assert.are.equal(good, slurp(p))
        fails("cannot create", pr.io.write_model_file("/nonexistent-dir/m.prt", {}, {}))
        fails("not a prunert model file", pr.io.read_model_file(DATA .. "a.npy"))
    end)
end)

describe("pr.json", function()
    it("encodes sorted and compact, decodes back", function()
        local s = pr.json.encode({b = 1, a = {1, 2.5, "x"}, c = {d = false, e = pr.json.null}})
        assert.are.equal('{"a":[1,2.5,"x"],"b":1,"c":{"d":false,"e":null}}', s)
        local v = pr.json.decode(s)
        assert.are.equal(2.5, v.a[2])
        assert.are.equal(pr.json.null, v.c.e)
        assert.are.equal(s, pr.json.encode(v))
        assert.are.equal("{}", pr.json.encode({}))
        assert.are.equal("[]", pr.json.encode(pr.json.array()))
        assert.are.equal('"caf\195\169 \\"q\\"\\n"', pr.json.encode('café "q"\n'))
        assert.are.equal("2.0", pr.json.encode(2.0))
        assert.are.equal("0.1", pr.json.encode(0.1))
        assert.are.equal('{\n  "a": [\n    1\n  ]\n}', pr.json.encode({a = {1}}, {indent = 2}))
        assert.are.equal("\240\159\152\128", pr.json.decode('"\\ud83d\\ude00"'))
    end)

    it("refuses malformed text with its position, and unencodable values by raising", function()
        fails("line 1, column 6 (byte 5): trailing comma", pr.json.decode("[1,2,]"))
        fails("line 2, column 3", pr.json.decode('{"a":1,\n  x}'))
        fails("duplicate key", pr.json.decode('{"a":1,"a":2}'))
        fails("invalid UTF-8", pr.json.decode('"\255"'))
        assert.has_error(function() pr.json.encode({1, 2, nil, 4}) end)
        assert.has_error(function() pr.json.encode({[1] = 1, x = 2}) end)
        assert.has_error(function() pr.json.encode(0 / 0) end)
        assert.has_error(function() pr.json.encode(print) end)
        local cyc = {}
        cyc.self = cyc
        local ok, err = pcall(pr.json.encode, cyc)
        assert.is_false(ok)
        assert.is_truthy(err:find("nested deeper", 1, true))
        ok, err = pcall(pr.json.encode, {a = {b = {print}}})
        assert.is_truthy(err:find("value.a.b[1]: cannot encode a function", 1, true))
        assert.has_error(function() pr.json.encode('\255') end)
    end)
end)
