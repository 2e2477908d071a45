-- cli_spec.lua: the `prunert` program as a user meets it: scripts and their `arg`, -e, stdin,
-- --version/--help, --threads and PRUNERT_THREADS, error messages with file:line and a
-- traceback, and exit statuses. Runs the built binary from $PRUNERT_BUILD_DIR.

local build = os.getenv("PRUNERT_BUILD_DIR") or "build"
local exe = build .. "/bin/prunert"

local q = require("spec_util").q

local function tmpfile(content)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(content)
    f:close()
    return path
end

-- Runs a shell command line; returns stdout, stderr and the exit status.
local function run(cmdline, stdin)
    local out, err = os.tmpname(), os.tmpname()
    local full = cmdline .. " >" .. out .. " 2>" .. err
    local input
    if stdin then
        input = tmpfile(stdin)
        full = full .. " <" .. input
    else
        full = full .. " </dev/null"
    end
    local ok, how, code = os.execute(full)
    local function slurp(p)
        local f = assert(io.open(p))
        local s = f:read("a")
        f:close()
        os.remove(p)
        return s
    end
    if input then os.remove(input) end
    return slurp(out), slurp(err), (how == "exit" and code or 128 + (code or 0)), ok
end

local function prunert(args, stdin, env)
    return run((env or "") .. " " .. q(exe) .. " " .. args, stdin)
end

describe("prunert program", function()
    it("exists", function()
        local f = io.open(exe)
        assert.is_not_nil(f, "no binary at " .. exe)
        f:close()
    end)

    it("prints its version and the Lua and OpenBLAS it uses", function()
        local out, _, code = prunert("--version")
        assert.are.equal(0, code)
        assert.matches("^prunert %d+%.%d+%.%d+ %(Lua 5%.4", out)
        assert.matches("OpenBLAS", out)
        local out2 = prunert("-v")
        assert.are.equal(out, out2)
    end)

    it("prints seconds per op at exit with PRUNERT_PROFILE=1, and nothing without it", function()
        local code = [[local pr = require "prunert"
local m = pr.nn.Sequential(pr.nn.Conv2d(1, 4, 3), pr.nn.ReLU(), pr.nn.Flatten(), pr.nn.Linear(4 * 6 * 6, 2))
m(pr.randn(3, 1, 8, 8)):sum():backward()]]
        local _, err, status = prunert("-e " .. q(code), nil, "PRUNERT_PROFILE=1")
        assert.are.equal(0, status)
        assert.matches("prunert profile", err)
        assert.matches("\nconv2d +1 +[%d.]+ +[%d.]+ +[%d.]+%%", err)
        assert.matches("\nlinear +1 ", err)
        assert.matches("\ntotal ", err)
        local _, err0 = prunert("-e " .. q(code))
        assert.are.equal("", err0)
    end)

    it("prints usage on --help and exits 0", function()
        local out, _, code = prunert("--help")
        assert.are.equal(0, code)
        assert.matches("usage: prunert", out)
        assert.matches("%-%-threads N", out)
    end)

    it("rejects an unknown option with usage on stderr and status 1", function()
        local out, err, code = prunert("--frobnicate")
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("unrecognized option '%-%-frobnicate'", err)
        assert.matches("usage:", err)
    end)

    it("runs -e code, several in order", function()
        local out, err, code = prunert("-e 'x = 20' -e 'print(x + 22)'")
        assert.are.equal(0, code, err)
        assert.are.equal("42\n", out)
    end)

    it("passes script arguments in `arg` as lua does", function()
        local script = tmpfile("print(#arg, arg[0] == ..., arg[1], arg[2], select('#', ...))\n" ..
                               "print(arg[-1])\n")
        local out, err, code = prunert(q(script) .. " alpha 'b c'")
        os.remove(script)
        assert.are.equal(0, code, err)
        -- `...` holds the script's arguments, so arg[0] == ... is false (arg[0] is the script)
        assert.are.equal("2\tfalse\talpha\tb c\t2\n" .. exe .. "\n", out)
    end)

    it("sets arg[0] to the script", function()
        local script = tmpfile("print(arg[0])\n")
        local out, _, code = prunert(q(script))
        assert.are.equal(0, code)
        assert.are.equal(script .. "\n", out)
        os.remove(script)
    end)

    it("runs a script from stdin with -", function()
        local out, err, code = prunert("- one", "print('stdin', arg[1])\n")
        assert.are.equal(0, code, err)
        assert.are.equal("stdin\tone\n", out)
    end)

    it("runs stdin when it is not a terminal and no script is given", function()
        local out, err, code = prunert("", "print(6 * 7)\n")
        assert.are.equal(0, code, err)
        assert.are.equal("42\n", out)
    end)

    it("reports a script error as prunert: file:line: message with a traceback, status 1", function()
        local script = tmpfile("local x = 1\nlocal function f() error('kaboom') end\nf()\n")
        local out, err, code = prunert(q(script))
        os.remove(script)
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("^prunert: " .. script:gsub("%p", "%%%0") .. ":2: kaboom\n", err)
        assert.matches("stack traceback:", err)
        assert.matches("in local 'f'", err)
    end)

    it("reports a syntax error and a missing script with status 1", function()
        local _, err, code = prunert("-e 'x = = 1'")
        assert.are.equal(1, code)
        assert.matches("^prunert: %(command line%):1:", err)
        local _, err2, code2 = prunert("/nonexistent/script.lua")
        assert.are.equal(1, code2)
        assert.matches("^prunert: cannot open /nonexistent/script.lua", err2)
    end)

    it("does not run later chunks after an error", function()
        local out, _, code = prunert("-e 'error(\"first\")' -e 'print(\"second\")'")
        assert.are.equal(1, code)
        assert.are.equal("", out)
    end)

    it("finds the runtime: require 'prunert' works without LUA_PATH", function()
        local out, err, code = prunert("-e 'local pr = require \"prunert\"; print(type(pr), " ..
                                       "package.loaded[\"prunert.core\"] ~= nil)'",
                                       nil, "LUA_PATH= LUA_CPATH=")
        assert.are.equal(0, code, err)
        assert.are.equal("table\ttrue\n", out)
    end)

    it("computes with tensors", function()
        local out, err, code = prunert("-e 'local pr = require \"prunert\"; " ..
                                       "local y = pr.ones(2, 3):sum(); print(y:item())'")
        assert.are.equal(0, code, err)
        assert.are.equal("6.0\n", out)
    end)

    describe("info", function()
        it("describes a saved model: layers, sparsity, bytes per chunk", function()
            local path = os.tmpname()
            local _, err, code = prunert("-e " .. q("local pr = require 'prunert'; local m = pr.nn.Sequential(" ..
                "pr.nn.Linear(8, 4), pr.nn.ReLU(), pr.nn.Linear(4, 2)); pr.prune.apply(m, {amount = 0.75}); " ..
                "assert(pr.save(m, '" .. path .. "', {criterion = 'l1'}))"))
            assert.are.equal(0, code, err)
            local out, err2, code2 = prunert("info " .. q(path))
            os.remove(path)
            assert.are.equal(0, code2, err2)
            assert.matches("Linear%(8 %-> 4%)%s+%[36 params%]", out)
            assert.matches("0%.weight%s+%[4,8%]%s+32%s+8%s+75%.00%%", out)
            assert.matches("0%.weight_mask%s+float32%s+dense", out)
            assert.matches("meta: {\"criterion\":\"l1\"}", out)
        end)

        it("names a missing or damaged file without a traceback, exit 1", function()
            local out, err, code = prunert("info /nonexistent/model.prunert")
            assert.are.equal(1, code)
            assert.are.equal("", out)
            assert.matches("^prunert: /nonexistent/model.prunert: cannot open", err)
            assert.is_nil(err:find("traceback", 1, true))
            local bad = tmpfile("PRUNERT\0garbage")
            local _, err2, code2 = prunert("info " .. q(bad))
            os.remove(bad)
            assert.are.equal(1, code2)
            assert.matches("^prunert: " .. bad:gsub("%p", "%%%0"), err2)
        end)
    end)

    describe("threads", function()
        -- The runtime's count is visible through the library; OpenBLAS gets the same number.
        local show = "-e 'local pr = require \"prunert\"; print(pr.threads())'"

        it("takes --threads N and --threads=N", function()
            local out, err, code = prunert("--threads 3 " .. show)
            assert.are.equal(0, code, err)
            assert.are.equal("3\n", out)
            out = prunert("--threads=1 " .. show)
            assert.are.equal("1\n", out)
        end)

        it("takes PRUNERT_THREADS, and the option wins over it", function()
            local out, err, code = prunert(show, nil, "PRUNERT_THREADS=2")
            assert.are.equal(0, code, err)
            assert.are.equal("2\n", out)
            out = prunert("--threads 1 " .. show, nil, "PRUNERT_THREADS=2")
            assert.are.equal("1\n", out)
        end)

        it("refuses bad counts", function()
            for _, bad in ipairs({ "--threads 0", "--threads -2", "--threads x", "--threads" }) do
                local _, err, code = prunert(bad .. " -e ''")
                assert.are.equal(1, code, bad)
                assert.matches("threads", err, 1, false)
            end
            local _, err, code = prunert("-e ''", nil, "PRUNERT_THREADS=many")
            assert.are.equal(1, code)
            assert.matches("PRUNERT_THREADS must be a positive integer", err)
        end)
    end)

    it("-i runs the prompt after the script: expressions print, statements run", function()
        local out, err, code = prunert("-i -e 'x = 5'", "x * 2\ny = x + 1\n=y\nfor i = 1, 2 do\nprint(i)\nend\n")
        assert.are.equal(0, code, err)
        assert.matches("^prunert %S+ %(Lua", out)
        assert.matches("> 10\n", out)
        assert.matches("> 6\n", out)
        assert.matches(">> >> 1\n2\n", out)
    end)

    it("keeps the prompt alive after an error at the prompt", function()
        local out, err, code = prunert("-i", "error('oops')\nprint('still here')\n")
        assert.are.equal(0, code)
        assert.matches("oops", err)
        assert.matches("still here", out)
    end)
end)
