-- html_render_spec.lua: a recipe's report.html, opened in headless Chromium, really renders:
-- the screenshot is a PNG that is not a blank page, and the DOM Chromium built holds the
-- tables, the inline SVG charts and the PNG mask images. CI installs chromium (.ci/setup);
-- without it this spec fails and says so.
local util = require "spec_util"
local build, source, exe = util.build, util.source, util.exe

local q, slurp = util.q, util.slurp

local function sh(cmd)
    local p = io.popen(cmd)
    local s = p:read("a")
    p:close()
    return s
end

local function find_chromium()
    for _, name in ipairs({"chromium", "chromium-browser"}) do
        local path = sh("command -v " .. name .. " 2>/dev/null"):gsub("%s+$", "")
        if path ~= "" then return path end
    end
    return nil
end

local work = os.tmpname()
os.remove(work)
os.execute("mkdir -p " .. q(work))

-- Runs headless Chromium on a URL with a fresh profile; `what` is the extra flag.
local function chromium(browser, what, url, out)
    local profile = work .. "/profile-" .. math.random(1, 1e9)
    -- env -u LD_PRELOAD: under the sanitizer build the specs preload libasan, which must
    -- not reach Chromium (it hangs); the prunert run below keeps it.
    local cmd = string.format("env -u LD_PRELOAD timeout 90 %s --headless --no-sandbox --disable-gpu --disable-quic --no-first-run " ..
        "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=%s " ..
        "--window-size=1200,2000 %s %s >%s 2>%s", q(browser), q(profile), what, q(url), q(out), q(out .. ".err"))
    local ok = os.execute(cmd)
    os.execute("rm -rf " .. q(profile))
    return ok
end

describe("report.html in headless Chromium", function()
    local browser = find_chromium()

    it("needs chromium", function()
        assert(browser, "chromium is not installed: apt-get install -y chromium (CI installs it from .ci/setup)")
    end)
    if not browser then return end

    -- A quick recipe whose report has tables, SVG charts and PNG masks.
    local out = work .. "/report"
    local ok = os.execute(string.format("cd %s && OPENBLAS_NUM_THREADS=1 %s recipes/lenet_l1.lua --limit 300 " ..
        "--epochs 1 --out %s >%s/recipe.log 2>&1", q(source), q(exe), q(out), q(work)))
    local html_path = out .. "/report.html"
    local url = "file://" .. html_path

    it("has a report to open", function()
        assert.is_true(ok, slurp(work .. "/recipe.log"))
        assert.truthy(slurp(html_path))
    end)

    it("renders a screenshot that is not a blank page", function()
        local shot, blank = work .. "/shot.png", work .. "/blank.png"
        chromium(browser, "--screenshot=" .. q(shot), url, work .. "/shot.log")
        local data = slurp(shot)
        assert.truthy(data, "no screenshot; chromium said:\n" .. (slurp(work .. "/shot.log.err") or ""))
        assert.are.equal("\137PNG\r\n\26\n", data:sub(1, 8))
        local w, h = string.unpack(">I4I4", data, 17)
        assert.are.same({1200, 2000}, {w, h})
        -- A white page of the same size compresses to almost nothing; the report must not.
        local empty = work .. "/empty.html"
        io.open(empty, "w"):write("<!DOCTYPE html><html><body></body></html>"):close()
        chromium(browser, "--screenshot=" .. q(blank), "file://" .. empty, work .. "/blank.log")
        local blank_data = assert(slurp(blank), "no screenshot of the empty page")
        assert.is_true(#data > 10 * #blank_data, string.format("the screenshot (%d bytes) looks blank (an empty page: %d bytes)",
            #data, #blank_data))
    end)

    it("builds a DOM with the tables, inline SVG charts and PNG images", function()
        local dom_path = work .. "/dom.html"
        chromium(browser, "--dump-dom", url, dom_path)
        local dom = slurp(dom_path) or ""
        assert.truthy(dom:find("<h1>LeNet-5: L1-norm filter pruning</h1>", 1, true),
            "no page title in the DOM; chromium said:\n" .. (slurp(dom_path .. ".err") or ""))
        local function count(pat) local _, n = dom:gsub(pat, "") return n end
        assert.is_true(count("<table>") >= 3)
        assert.is_true(count("<svg") >= 4, "fewer than 4 inline SVG charts")
        assert.is_true(count("<rect") > 10, "the charts have no bars")
        assert.are.equal(2, count('<img class="mask" src="data:image/png;base64,'))
        assert.truthy(dom:find("mask_conv1.png", 1, true))
    end)

    teardown(function() os.execute("rm -rf " .. q(work)) end)
end)
