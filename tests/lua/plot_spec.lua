-- plot_spec.lua: SVG charts (prunert.plot), PNG mask images (core.png_write / png_encode) and
-- the HTML report (prunert.report_html): what they draw, how they escape, how they fail.
local pr = require "prunert"
local plot = require "prunert.plot"
local report_html = require "prunert.report_html"

local function tmp(suffix)
    local p = os.tmpname()
    os.remove(p)
    return p .. suffix
end

local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function count(s, pat) local _, n = s:gsub(pat, "") return n end

-- CRC-32 (the PNG/zlib polynomial), to check each chunk the writer emits.
local CRC = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do c = (c & 1) == 1 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
    CRC[i] = c
end
local function crc32(s)
    local c = 0xFFFFFFFF
    for i = 1, #s do c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
    return c ~ 0xFFFFFFFF
end

-- Chunks of a PNG file: {type, data} in order, each CRC checked.
local function png_chunks(data)
    assert.are.equal("\137PNG\r\n\26\n", data:sub(1, 8))
    local chunks, pos = {}, 9
    while pos <= #data do
        local len, kind = string.unpack(">I4c4", data, pos)
        local body = data:sub(pos + 8, pos + 7 + len)
        local crc = string.unpack(">I4", data, pos + 8 + len)
        assert.are.equal(crc32(kind .. body), crc, "bad CRC on " .. kind)
        chunks[#chunks + 1] = {kind, body}
        pos = pos + 12 + len
    end
    return chunks
end

describe("plot.bars", function()
    it("draws one bar per value with its label, and a legend for several series", function()
        local path = plot.bars(tmp(".svg"), {title = "Accuracy <dense & pruned>", categories = {"dense", "pruned"},
            format = "%.2f", series = {{name = "before", values = {0.9, 0.5}}, {name = "after", values = {0.91, 0.88}}}})
        local svg = slurp(path)
        assert.truthy(svg:find('^<svg xmlns="http://www.w3.org/2000/svg"'))
        assert.truthy(svg:find("</svg>\n$"))
        assert.are.equal(4, count(svg, "<title>")) -- one tooltip per bar
        for _, v in ipairs({"0.90", "0.50", "0.91", "0.88"}) do assert.truthy(svg:find(">" .. v .. "<", 1, true), v) end
        assert.truthy(svg:find("Accuracy &lt;dense &amp; pruned&gt;", 1, true))
        assert.is_nil(svg:find("<dense", 1, true))
        assert.truthy(svg:find(">before<", 1, true) and svg:find(">after<", 1, true))
        assert.is_nil(svg:find("<script", 1, true))
        os.remove(path)
    end)

    it("makes taller bars for larger values", function()
        local svg = plot.svg_bars({categories = {"a", "b"}, series = {{name = "s", values = {1, 3}}}})
        local heights = {}
        for h in svg:gmatch('<rect x="[%d.]+" y="[%d.]+" width="[%d.]+" height="([%d.]+)"') do heights[#heights + 1] = tonumber(h) end
        assert.are.equal(2, #heights)
        assert.is_true(math.abs(heights[2] / heights[1] - 3) < 0.01)
    end)

    it("refuses series that do not match the categories", function()
        local ok, err = pcall(plot.svg_bars, {categories = {"a", "b"}, series = {{name = "s", values = {1}}}})
        assert.is_false(ok)
        assert.truthy(err:find("1 values for 2 categories", 1, true))
        assert.is_false(pcall(plot.svg_bars, {categories = {"a"}}))
    end)
end)

describe("plot.lines", function()
    it("draws a polyline per series through its points", function()
        local svg = plot.svg_lines({xlabel = "amount", ylabel = "accuracy", series = {
            {name = "conv1", x = {0.1, 0.5, 0.9}, y = {0.9, 0.8, 0.2}}, {name = "fc1", x = {0.1, 0.9}, y = {0.9, 0.85}}}})
        assert.are.equal(2, count(svg, "<polyline"))
        assert.are.equal(5, count(svg, "<circle"))
        assert.truthy(svg:find(">amount<", 1, true))
        -- the first point is left of and above the last point of conv1 (y grows downwards)
        local pts = svg:match('<polyline[^>]-points="([^"]+)"')
        local x1, y1 = pts:match("^([%d.]+),([%d.]+)")
        local x3, y3 = pts:match("([%d.]+),([%d.]+)$")
        assert.is_true(tonumber(x1) < tonumber(x3) and tonumber(y1) < tonumber(y3))
    end)

    it("averages long series down to max_points", function()
        local x, y = {}, {}
        for i = 1, 1000 do x[i], y[i] = i, i % 2 end
        local svg = plot.svg_lines({series = {{name = "loss", x = x, y = y}}, max_points = 100})
        assert.are.equal(100, count(svg, "<circle"))
        assert.truthy(svg:find("(5.5, 0.5)", 1, true)) -- first bucket: mean of 1..10 and of 1,0,...
    end)

    it("needs x and y of the same length", function()
        local ok, err = pcall(plot.svg_lines, {series = {{name = "s", x = {1, 2}, y = {1}}}})
        assert.is_false(ok)
        assert.truthy(err:find("same length", 1, true))
    end)
end)

describe("png", function()
    it("writes a valid grayscale PNG of the right size", function()
        local path = tmp(".png")
        assert.is_true(pr.png_write(path, pr.tensor({{0, 1, 0.5}, {1, 0, 1}})))
        local chunks = png_chunks(slurp(path))
        assert.are.same({"IHDR", "IDAT", "IEND"}, {chunks[1][1], chunks[2][1], chunks[3][1]})
        local w, h, depth, colour = string.unpack(">I4I4BB", chunks[1][2])
        assert.are.same({3, 2, 8, 0}, {w, h, depth, colour})
        os.remove(path)
    end)

    it("writes RGB from [H, W, 3] uint8 and encodes to a string", function()
        local img = pr.zeros(4, 5, 3):byte()
        local data = pr.png_encode(img)
        local chunks = png_chunks(data)
        local w, h, _, colour = string.unpack(">I4I4BB", chunks[1][2])
        assert.are.same({5, 4, 2}, {w, h, colour})
    end)

    it("reports bad images and unwritable paths", function()
        local ok, err = pcall(pr.png_write, tmp(".png"), pr.zeros(2, 2, 2))
        assert.is_false(ok)
        assert.truthy(err:find("[H, W] (gray) or [H, W, 3] (RGB)", 1, true))
        assert.truthy(err:find("[2,2,2]", 1, true))
        local ok2, err2 = pcall(pr.png_write, tmp(".png"), pr.zeros(2, 2):long())
        assert.is_false(ok2)
        assert.truthy(err2:find("uint8 or float32", 1, true))
        local r, msg = pr.png_write("/nonexistent-dir/x.png", pr.zeros(2, 2))
        assert.is_nil(r)
        assert.truthy(msg:find("cannot open", 1, true))
    end)
end)

describe("plot.mask", function()
    it("shows a conv weight's mask as one row per filter, white = kept", function()
        local w = pr.nn.Conv2d(2, 3, 2):own_params()[1][2]
        local m = pr.ones(3, 2, 2, 2)
        m:narrow(1, 2, 1):fill_(0) -- filter 2 pruned
        w:set_mask(m)
        local img = plot.mask_image(w)
        assert.are.same({3, 8}, img:shape())
        assert.are.same({1, 0, 1}, img:sum(2):div(8):view(3):totable())
        local path = plot.mask(tmp(".png"), w)
        local w_, h_ = string.unpack(">I4I4", png_chunks(slurp(path))[1][2])
        assert.are.same({8, 3}, {w_, h_})
        os.remove(path)
    end)

    it("uses the non-zeros of a weight without a mask", function()
        local img = plot.mask_image(pr.tensor({{0, 2}, {-1, 0}}))
        assert.are.same({{0, 1}, {1, 0}}, img:totable())
    end)
end)

describe("report_html", function()
    it("encodes base64 as RFC 4648", function()
        local b = report_html.base64
        assert.are.equal("", b(""))
        assert.are.equal("Zg==", b("f"))
        assert.are.equal("Zm8=", b("fo"))
        assert.are.equal("Zm9v", b("foo"))
        assert.are.equal("Zm9vYmFy", b("foobar"))
        assert.are.equal("AP8=", b("\0\255"))
    end)

    it("renders one page with tables, inline SVG, PNG data URIs, escaped text", function()
        local svg = plot.bars(tmp(".svg"), {categories = {"a"}, series = {{name = "s", values = {1}}}})
        local png = tmp(".png")
        pr.png_write(png, pr.ones(2, 3))
        local html = report_html.render({
            title = "T <script>alert(1)</script>", intro = "a & b",
            summary = {header = {"", "dense", "pruned"}, rows = {{"accuracy", "90%", "89%"}, {"params", 431080, 0.5}}},
            tables = {{title = "Layers", header = {"layer"}, rows = {{"<fc1>"}}}},
            images = {{title = "chart", path = svg}, {title = "mask", path = png}},
            notes = {"missing: <sparse>"},
        })
        assert.truthy(html:find("^<!DOCTYPE html>"))
        assert.is_nil(html:find("<script", 1, true))
        assert.truthy(html:find("T &lt;script&gt;alert(1)&lt;/script&gt;", 1, true))
        assert.truthy(html:find("a &amp; b", 1, true))
        assert.truthy(html:find("&lt;fc1&gt;", 1, true))
        assert.truthy(html:find("<td>431080</td>", 1, true))
        assert.are.equal(1, count(html, "<svg"))
        assert.truthy(html:find('src="data:image/png;base64,' .. report_html.base64(slurp(png)) .. '"', 1, true))
        assert.truthy(html:find('width="24" height="16"', 1, true)) -- 3 x 2 scaled by 8, no smoothing
        assert.truthy(html:find("missing: &lt;sparse&gt;", 1, true))
        os.remove(svg)
        os.remove(png)
    end)

    it("refuses images it cannot inline", function()
        local ok, err = pcall(report_html.render, {images = {{path = "/nonexistent/x.svg"}}})
        assert.is_false(ok)
        assert.truthy(err:find("x.svg", 1, true))
        local gif = tmp(".gif")
        io.open(gif, "w"):close()
        local ok2, err2 = pcall(report_html.render, {images = {{path = gif}}})
        assert.is_false(ok2)
        assert.truthy(err2:find(".svg and .png", 1, true))
        os.remove(gif)
    end)

    it("turns a prune report into a per-layer table", function()
        local m = pr.nn.Sequential(pr.nn.Linear(4, 3), pr.nn.ReLU(), pr.nn.Linear(3, 2))
        pr.prune.apply(m, {criterion = "l1", amount = 0.5})
        local t = report_html.layer_table(pr.prune.report(m, {input = {1, 4}, quiet = true}))
        assert.are.equal(3, #t.rows)
        assert.are.equal("total", t.rows[3][1])
        assert.are.equal("[3,4]", t.rows[1][3])
    end)
end)
