-- recipes_spec.lua: every recipe runs end to end on a small slice of Fashion-MNIST through the
-- built `prunert` program, and its outputs are checked: results.json decodes and its figures
-- make sense (accuracies in [0, 1] and above chance, sparsity as asked, pruned smaller than
-- dense), results.csv has rows, report.html exists and shows every image the recipe wrote.
-- Also the option parser (prunert.cli) the recipes share. Whole spec: about 20 s on 2 cores.
local pr = require "prunert"
local cli = require "prunert.cli"

local util = require "spec_util"
local build, source, exe = util.build, util.source, util.exe
do
    local f = io.open(exe, "rb")
    if f then f:close() else exe = build .. "/prunert" end
end

local q, slurp = util.q, util.slurp

local made = {} -- removed when the spec ends
local function tmpdir()
    local p = os.tmpname()
    os.remove(p)
    assert(os.execute("mkdir -p " .. q(p)))
    made[#made + 1] = p
    return p
end

-- Runs a recipe with args into a fresh --out directory; returns the directory, stdout+stderr
-- and whether it exited 0.
local function run(recipe, args)
    local out = tmpdir()
    local log = out .. "/log.txt"
    local cmd = string.format("cd %s && OPENBLAS_NUM_THREADS=1 %s recipes/%s.lua %s --out %s >%s 2>&1 </dev/null",
        q(source), q(exe), recipe, args, q(out .. "/run"), q(log))
    local ok = os.execute(cmd)
    return out .. "/run", slurp(log) or "", ok
end

local function ls(dir)
    local p = io.popen("ls " .. q(dir))
    local names = {}
    for line in p:lines() do names[#names + 1] = line end
    p:close()
    return names
end

-- The checks every recipe's outputs must pass; returns the decoded results.json.
local function common_outputs(dir, log)
    local json = slurp(dir .. "/results.json")
    assert.is_truthy(json, "no results.json; the run said:\n" .. log)
    local res = pr.json.decode(json)
    assert.are.equal("table", type(res))
    local csv = slurp(dir .. "/results.csv")
    assert.is_truthy(csv, "no results.csv")
    local lines = 0
    for _ in csv:gmatch("[^\n]+") do lines = lines + 1 end
    assert.is_true(lines >= 2, "results.csv has no data rows")
    local html = slurp(dir .. "/report.html")
    assert.is_truthy(html, "no report.html")
    assert.truthy(html:find("<!DOCTYPE html>", 1, true))
    assert.truthy(html:find("<table>", 1, true))
    local images = 0
    for _, name in ipairs(ls(dir)) do
        if name:match("%.svg$") or name:match("%.png$") then
            images = images + 1
            assert.truthy(html:find(name, 1, true), "report.html does not show " .. name)
            if name:match("%.svg$") then
                assert.truthy(slurp(dir .. "/" .. name):find("^<svg"), name .. " is not an SVG")
            else
                assert.are.equal("\137PNG\r\n\26\n", slurp(dir .. "/" .. name):sub(1, 8), name .. " is not a PNG")
            end
        end
    end
    assert.is_true(images >= 2, "the recipe wrote fewer than two plots")
    local _, svgs = html:gsub("<svg", "")
    local _, pngs = html:gsub("data:image/png;base64,", "")
    assert.is_true(svgs + pngs >= images, "report.html does not inline every image")
    return res
end

local function is_accuracy(v, floor)
    assert.are.equal("number", type(v))
    assert.is_true(v >= 0 and v <= 1, "accuracy " .. tostring(v) .. " is outside [0, 1]")
    if floor then assert.is_true(v > floor, string.format("accuracy %.3f is not above %.2f", v, floor)) end
end

local function near(a, b, tol) assert.is_true(math.abs(a - b) <= tol, string.format("%g is not within %g of %g", a, tol, b)) end

describe("recipes", function()
    it("lenet_l1 prunes, fine-tunes, compacts and compares", function()
        local dir, log, ok = run("lenet_l1", "--limit 600 --epochs 2 --lr 0.05 --amounts 0.5,0.6")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        is_accuracy(res.dense.accuracy, 0.2)
        is_accuracy(res.pruned.accuracy, 0.2)
        is_accuracy(res.pruned.accuracy_before_fine_tune)
        assert.are.same({10, 1, 5, 5}, res.layers[1].shape)   -- half of conv1's 20 filters
        assert.are.same({20, 10, 5, 5}, res.layers[2].shape)  -- 40% of conv2's 50, and conv1's removed inputs
        assert.are.same({500, 320}, res.layers[3].shape)      -- 20 channels x 4 x 4
        near(res.masked_layers[1].sparsity, 0.5, 0.01)
        assert.is_true(res.pruned.params < res.dense.params)
        assert.is_true(res.pruned.flops < res.dense.flops)
        assert.is_true(res.pruned.file_bytes < res.dense.file_bytes)
        assert.is_true(res.dense.latency_per_10k > 0 and res.pruned.latency_per_10k > 0)
        local m = assert(pr.load(dir .. "/pruned.prunert"))
        assert.are.equal(res.pruned.params, m:num_parameters())
        -- the one table: every row printed
        for _, row in ipairs({"accuracy", "parameters", "FLOPs per image", "latency per 10k images", "file size"}) do
            assert.truthy(log:find(row, 1, true), "the table has no row '" .. row .. "'")
        end
    end)

    it("lenet_l1 takes its amounts from a sensitivity analysis", function()
        local dir, log, ok = run("lenet_l1", "--limit 500 --epochs 1 --ft-epochs 0 --sensitivity --budget 0.05 --threads 1")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        assert.are.equal(2, #res.sensitivity.layers)
        for _, l in ipairs(res.sensitivity.layers) do assert.are.equal(9, #l.results) end
        assert.truthy(slurp(dir .. "/report.html"):find("sensitivity.svg", 1, true))
    end)

    it("seed000_gradient_mask compares three criteria at validated amounts", function()
        local dir, log, ok = run("seed000_gradient_mask", "--limit 600 --epochs 3 --reg l1")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        is_accuracy(res.dense.test, 0.3)
        assert.is_true(res.updates_skipped > 0 and res.updates_skipped < 1)
        assert.are.equal(3, #res.methods)
        for _, m in ipairs(res.methods) do
            is_accuracy(m.test)
            assert.are.equal(#res.amounts, #m.validation)
            if m.name ~= "activity" then near(m.sparsity, m.amount, 0.01) end
        end
    end)

    it("seed001_magnitude prunes half of each layer, globally and by mu - k sigma", function()
        local dir, log, ok = run("seed001_magnitude", "--limit 600 --epochs 2 --lr 0.05 --amount 0.5")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        is_accuracy(res.dense_accuracy, 0.2)
        local by = {}
        for _, m in ipairs(res.methods) do by[m.name] = m; is_accuracy(m.accuracy) end
        near(by["layer-wise"].sparsity, 0.5, 0.01)
        near(by["global"].sparsity, 0.5, 0.01)
        for _, l in ipairs(by["layer-wise"].layers) do near(l.sparsity, 0.5, 0.03) end
        assert.is_true(by["statistical"].sparsity > 0 and by["statistical"].sparsity < 1)
    end)

    it("seed002_taylor runs the iterative loop with cross-entropy and MSE", function()
        local dir, log, ok = run("seed002_taylor", "--limit 600 --rounds 2 --final 0.6")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        assert.are.equal(2, #res.runs)
        for _, r in ipairs(res.runs) do
            assert.are.equal(3, #r.rounds)
            is_accuracy(r.rounds[1].accuracy, 0.3)
            near(r.rounds[3].sparsity, 0.6, 0.01)
            is_accuracy(r.rounds[3].accuracy, 0.2)
        end
    end)

    it("seed003_depthwise prunes coupled channels and folds BatchNorm", function()
        local dir, log, ok = run("seed003_depthwise", "--limit 400 --epochs 1 --amount 0.5")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        assert.are.equal(5, res.bn_folded)
        assert.is_true(res.fold_max_diff < 1e-3)
        local dense = res.results[1]
        for i = 2, #res.results do
            is_accuracy(res.results[i].accuracy)
            assert.is_true(res.results[i].params < dense.params)
        end
        -- half of the stem's 16 channels are gone, and the depthwise conv after it matches
        assert.are.same({8, 1, 3, 3}, res.layers[1].shape)
        assert.are.same({8, 1, 3, 3}, res.layers[2].shape)
    end)

    it("sensitivity suggests amounts from the ones it tried", function()
        local dir, log, ok = run("sensitivity", "--limit 600 --epochs 2 --lr 0.05 --amounts 0.3,0.6,0.9")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        is_accuracy(res.dense_accuracy, 0.2)
        is_accuracy(res.fine_tuned_accuracy)
        assert.are.equal(4, #res.sensitivity.layers)
        for name, a in pairs(res.amounts) do
            assert.truthy(a == 0 or a == 0.3 or a == 0.6 or a == 0.9, name .. ": " .. tostring(a))
        end
        assert.truthy(slurp(dir .. "/sensitivity.csv"))
    end)

    it("agp_sparse reaches the final sparsity during training", function()
        local dir, log, ok = run("agp_sparse", "--limit 600 --final 0.9")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        near(res.sparsity, 0.9, 0.02)
        is_accuracy(res.accuracy, 0.3)
        assert.is_true(#res.schedule > 2)
        for i = 2, #res.schedule do assert.is_true(res.schedule[i].target >= res.schedule[i - 1].target) end
        assert.is_true(res.file_stored_bytes < res.file_raw_bytes)
        if res.plans then -- pr.optimize's kernels must give the same answers
            assert.are.equal(3, #res.plans)
            near(res.sparse_accuracy, res.accuracy, 0.002)
        end
    end)

    it("train_lenet trains the reference LeNet-5 and saves it", function()
        local dir, log, ok = run("train_lenet", "--limit 600 --epochs 2 --save " .. q(tmpdir() .. "/lenet.prunert"))
        assert.is_true(ok, log)
        local acc = tonumber(log:match("test accuracy ([%d%.]+)%%"))
        assert.is_not_nil(acc, log)
        assert.is_true(acc > 30 and acc <= 100, log)
        local path = log:match("saved (%S+)")
        local model, meta = pr.load(path)
        assert.is_not_nil(model, meta)
        assert.are.equal("train_lenet", meta.recipe)
        assert.is_true(math.abs(meta.test_accuracy * 100 - acc) < 0.01)
    end)

    it("read MNIST-style IDX files from --data DIR", function()
        local data = tmpdir()
        for _, f in ipairs({"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"}) do
            assert(os.execute(string.format("ln -s /usr/share/datasets/fashion-mnist/%s.gz %s/%s.gz", f, q(data), f)))
        end
        local dir, log, ok = run("seed002_taylor", "--data " .. q(data) .. " --limit 300 --rounds 1 --final 0.5")
        assert.is_true(ok, log)
        local res = common_outputs(dir, log)
        assert.truthy(log:find("300 training", 1, true))
        near(res.runs[1].rounds[2].sparsity, 0.5, 0.01)
        local _, log2, ok2 = run("seed002_taylor", "--data /nonexistent-dir")
        assert.is_falsy(ok2)
        assert.truthy(log2:find("--data /nonexistent-dir: MNIST: train-images-idx3-ubyte(.gz) not found", 1, true), log2)
        assert.is_nil(log2:find("traceback", 1, true))
    end)

    it("print their options with --help and reject bad ones", function()
        local out = tmpdir()
        local ok = os.execute(string.format("cd %s && %s recipes/lenet_l1.lua --help >%s/help.txt 2>&1", q(source), q(exe), q(out)))
        assert.is_true(ok)
        local help = slurp(out .. "/help.txt")
        for _, o in ipairs({"--epochs", "--data DIR", "--out DIR", "--threads", "--amounts", "--seed", "--limit", "--sensitivity"}) do
            assert.truthy(help:find(o, 1, true), "--help does not list " .. o)
        end
        assert.truthy(help:find("(default 0.5,0.7)", 1, true))
        local ok2, _, code = os.execute(string.format("cd %s && %s recipes/lenet_l1.lua --amounts 0.5,2 >%s/bad.txt 2>&1",
            q(source), q(exe), q(out)))
        assert.is_falsy(ok2)
        assert.are.equal(2, code)
        assert.truthy(slurp(out .. "/bad.txt"):find("--amounts: amounts must be in [0, 1]", 1, true))
    end)
end)

teardown(function()
    for _, d in ipairs(made) do os.execute("rm -rf " .. q(d)) end
end)

describe("prunert.cli", function()
    local spec = {name = "t", cli.common{epochs = 2, amounts = {0.5, 0.7}},
                  {"flag_x", "flag", false, "a flag"}, {"mode", "choice", "a", "a choice", {"a", "b"}}}

    it("parses values, lists, flags and both spellings", function()
        local o = cli.parse_args({"--epochs", "3", "--amounts=0.1,0.2,0.3", "--flag-x", "--mode", "b", "--lr=0.5"}, spec)
        assert.are.equal(3, o.epochs)
        assert.are.same({0.1, 0.2, 0.3}, o.amounts)
        assert.is_true(o.flag_x)
        assert.are.equal("b", o.mode)
        assert.are.equal(0.5, o.lr)
        local d = cli.parse_args({}, spec)
        assert.are.equal(2, d.epochs)
        assert.are.same({0.5, 0.7}, d.amounts)
        assert.is_false(d.flag_x)
        assert.is_false(cli.parse_args({"--flag-x", "--no-flag-x"}, spec).flag_x)
    end)

    it("gives the help text instead of options for --help", function()
        local o, help = cli.parse_args({"--epochs", "3", "--help"}, spec)
        assert.is_nil(o)
        assert.truthy(help:find("--epochs INT", 1, true))
        assert.truthy(help:find("[a|b]", 1, true))
    end)

    it("names the problem in a bad option", function()
        local function fails(args, msg)
            local ok, err = pcall(cli.parse_args, args, spec)
            assert.is_false(ok)
            assert.truthy(tostring(err):find(msg, 1, true), tostring(err))
        end
        fails({"--epochs", "two"}, "--epochs: expected an integer, got 'two'")
        fails({"--epochs", "-1"}, "--epochs: must not be negative")
        fails({"--epochs"}, "--epochs needs a value")
        fails({"--nope"}, "unknown option '--nope'")
        fails({"--mode", "c"}, "--mode: expected one of a, b, got 'c'")
        fails({"--amounts", "0.1,x"}, "--amounts: expected numbers separated by commas")
        fails({"stray"}, "unexpected argument 'stray'")
    end)

    it("writes CSV with quoting and plain tables", function()
        assert.are.equal('a,b\n1,"x,y"\n0.5,"say ""hi"""\n', cli.csv({"a", "b"}, {{1, "x,y"}, {0.5, 'say "hi"'}}))
        local t = cli.table({"name", "n"}, {{"x", 1}, {"longer", 22}})
        assert.truthy(t:find("longer  22", 1, true))
    end)
end)
